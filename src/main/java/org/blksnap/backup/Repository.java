package org.blksnap.backup;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.function.Consumer;

/**
 * A backup repository ({@link RepositoryLayout}) in a directory or an S3 bucket: restore points of
 * devices whose chunks are stored once, by content, however many points, devices and hosts use
 * them. Opened for reading ({@link #openForReading}: points, restore, verify), for writing
 * ({@link #openForWriting}: backup) or for maintenance ({@link #openForMaintenance}: prune, gc).
 * Any number of each may be open at once, on any number of hosts: a writer announces itself with
 * a {@link WriterSession}, writes only objects of its own (packs of random names, manifests of
 * unique ids, its own index objects), and gc follows the rules of {@link GarbageCollector}.
 *
 * <p>Not thread-safe as a whole: one thread drives it (each operation uses threads of its own).
 * Every failure is a {@link RepositoryException} whose code says what kind it is.
 */
public final class Repository implements AutoCloseable {
    private final ObjectStore objects;
    private final String repoId;
    private final String host;
    private final WriterSession session;
    private final List<Map<String, String>> staleSessions;
    private final long targetPackBytes;
    private final Consumer<String> warn;
    private final boolean maintenance;
    /** The key of an encrypted repository (checked against its config), or null. */
    private final RepositoryKey key;
    private DedupScope dedupScope = DedupScope.ALL;
    private ChunkStore store;
    /** The damaged copies recorded when {@link #store} loaded ({@link DamagedCopies#normal}). */
    private java.util.Set<Ref> damagedCopies = java.util.Set.of();
    /** The writer's loaded refs as this process keeps them ({@link WriterIndexCache}); set with {@link #store}. */
    private WriterIndexCache.State keptIndex;
    private BlobReader reader;

    private Repository(ObjectStore objects, String repoId, String host, WriterSession session,
                       List<Map<String, String>> staleSessions, long targetPackBytes, Consumer<String> warn, boolean maintenance,
                       RepositoryKey key) {
        this.objects = objects;
        this.key = key;
        this.repoId = repoId;
        this.host = host;
        this.session = session;
        this.staleSessions = staleSessions;
        this.targetPackBytes = targetPackBytes;
        this.warn = warn;
        this.maintenance = maintenance;
    }

    /** What a host name may be (a DNS name, or a simpler label). */
    public static final String HOST_PATTERN = "[A-Za-z0-9][A-Za-z0-9._-]{0,252}";

    /** Which index objects a writer deduplicates against: every host's, or only its own host's. */
    public enum DedupScope {
        /** Every index object of the repository: chunks of any host are stored once. */
        ALL,
        /** Only the writer's own host's (and a version 1 upgrade's): bounded memory and downloads in a large fleet. */
        HOST
    }

    /** This machine's host name as points record it: {@code BLKSNAP_HOST}, else the system's. */
    public static String defaultHost() {
        String env = System.getenv("BLKSNAP_HOST");
        if (env != null && !env.isBlank()) {
            return env.trim();
        }
        String name;
        try {
            // the kernel's host name (gethostname(2)); InetAddress.getLocalHost() would also resolve it,
            // which costs a name-service round trip (70 ms here) at every backup
            name = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/sys/kernel/hostname")).trim();
        } catch (java.io.IOException | RuntimeException e) {
            try {
                name = java.net.InetAddress.getLocalHost().getHostName();
            } catch (java.io.IOException e2) {
                return "localhost";
            }
        }
        return name.matches(HOST_PATTERN) ? name : "localhost";
    }

    /**
     * Parses a {@code --repo} value: {@code s3://BUCKET[/PREFIX]} or a directory.
     *
     * @param s3Endpoint {@code --s3-endpoint}, or null ({@code BLKSNAP_S3_ENDPOINT} then)
     * @throws IllegalArgumentException a malformed location (the message names it)
     */
    public static RepositoryLocation locate(String repo, String s3Endpoint) {
        return RepositoryLocation.parse(repo, s3Endpoint);
    }

    static ObjectStore storeFor(RepositoryLocation where) {
        return switch (where) {
            case RepositoryLocation.Directory d -> new DirectoryStore(d.dir());
            case RepositoryLocation.S3 s -> new S3Store(s);
        };
    }

    /**
     * Opens an existing repository directory to read it.
     *
     * @throws RepositoryException NOT_FOUND no repository there; VERSION another format; DAMAGED a bad config
     */
    public static Repository openForReading(Path dir) throws RepositoryException {
        return openForReading(new RepositoryLocation.Directory(dir));
    }

    /** Opens an existing unencrypted repository to read it (errors as {@link #openForReading(Path)}). */
    public static Repository openForReading(RepositoryLocation where) throws RepositoryException {
        return openForReading(where, null);
    }

    /**
     * Opens an existing repository to read it.
     *
     * @param key the key of an encrypted repository, or null for an unencrypted one
     * @throws RepositoryException as {@link #openForReading(Path)}; KEY the key does not fit (see {@link #checkKey})
     */
    public static Repository openForReading(RepositoryLocation where, RepositoryKey key) throws RepositoryException {
        ObjectStore objects = storeFor(where);
        try {
            Config c = readConfig(objects);
            checkKey(objects, c, key);
            return new Repository(objects, c.id(), defaultHost(), null, List.of(), PackDescriptor.TARGET_PACK_BYTES,
                    m -> { }, false, key);
        } catch (RepositoryException | RuntimeException e) {
            objects.close();
            throw e;
        }
    }

    /**
     * Opens an existing repository for prune and gc: no writer session (gc must not wait for
     * itself); upgrades a version 1 repository.
     */
    public static Repository openForMaintenance(RepositoryLocation where, Consumer<String> warn) throws RepositoryException {
        return openForMaintenance(where, null, warn);
    }

    /**
     * {@link #openForMaintenance(RepositoryLocation, Consumer)} with the key of an encrypted
     * repository (null: unencrypted). gc and prune read manifests and index nodes, so they need it.
     */
    public static Repository openForMaintenance(RepositoryLocation where, RepositoryKey key, Consumer<String> warn)
            throws RepositoryException {
        ObjectStore objects = storeFor(where);
        try {
            Config c = readConfig(objects);
            checkKey(objects, c, key);
            if (c.version() == RepositoryLayout.VERSION_1) {
                upgrade(objects, c, warn);
            }
            return new Repository(objects, c.id(), defaultHost(), null, List.of(), PackDescriptor.TARGET_PACK_BYTES, warn,
                    true, key);
        } catch (RepositoryException | RuntimeException e) {
            objects.close();
            throw e;
        }
    }

    /** {@link #openForWriting(RepositoryLocation, String, long, Consumer)} of a directory, as this host. */
    public static Repository openForWriting(Path dir, long targetPackBytes, Consumer<String> warn) throws RepositoryException {
        return openForWriting(new RepositoryLocation.Directory(dir), defaultHost(), targetPackBytes, warn);
    }

    /**
     * Opens a repository to write points, creating it when the directory is missing or empty, or
     * when nothing is under the S3 prefix; begins a writer session (other writers may be at work);
     * hands over what writers of this host that died left (see {@link #staleSessions}); upgrades a
     * version 1 repository.
     *
     * @param host            the host name points record ({@link #defaultHost})
     * @param targetPackBytes size at which a pack is sealed ({@link PackDescriptor#TARGET_PACK_BYTES} normally)
     * @param warn            where non-fatal findings go (a damaged index object)
     * @throws RepositoryException VERSION, DAMAGED, NOT_FOUND as for reading; IO the store failed
     */
    public static Repository openForWriting(RepositoryLocation where, String host, long targetPackBytes,
                                            Consumer<String> warn) throws RepositoryException {
        return openForWriting(where, null, host, targetPackBytes, warn);
    }

    /**
     * {@link #openForWriting(RepositoryLocation, String, long, Consumer)} with the key of an
     * encrypted repository (null: unencrypted). An encrypted repository is never created here
     * ({@link #init} makes one); the key is checked before anything is written.
     *
     * @throws RepositoryException KEY the key does not fit (see {@link #checkKey}); NOT_FOUND a key
     *                             is given and there is no repository
     */
    public static Repository openForWriting(RepositoryLocation where, RepositoryKey key, String host, long targetPackBytes,
                                            Consumer<String> warn) throws RepositoryException {
        if (host == null || !host.matches(HOST_PATTERN)) {
            throw new IllegalArgumentException("host (" + host + ") must be 1-253 letters, digits, dots, hyphens or "
                    + "underscores, beginning with a letter or digit");
        }
        ObjectStore objects = storeFor(where);
        WriterSession session = null;
        try {
            Config c = createIfEmpty(objects, where, key);
            checkKey(objects, c, key);
            if (c.version() == RepositoryLayout.VERSION_1) {
                upgrade(objects, c, warn);
            }
            session = WriterSession.begin(objects, host, warn);
            List<Map<String, String>> stale = WriterSession.reapDead(objects, host, session.id());
            return new Repository(objects, c.id(), host, session, stale, targetPackBytes, warn, false, key);
        } catch (RepositoryException | RuntimeException e) {
            if (session != null) {
                session.close();
            }
            objects.close();
            throw e;
        }
    }

    /**
     * A repository's config.
     *
     * @param keyCheck the key check of an encrypted repository ({@link CryptoDescriptor}), or null
     */
    record Config(int version, String id, String keyCheck) {
        boolean encrypted() {
            return keyCheck != null;
        }
    }

    /**
     * The one rule of keys: an encrypted repository is opened with its key only, an unencrypted
     * one with none (no silent mixing of encrypted and plain objects).
     *
     * @throws RepositoryException KEY naming the repository and the key file
     */
    private static void checkKey(ObjectStore objects, Config c, RepositoryKey key) throws RepositoryException {
        if (c.encrypted() && key == null) {
            throw new RepositoryException(RepositoryException.Code.KEY, "repository " + objects.location()
                    + " is encrypted: give its key file with --key-file FILE (or $" + RepositoryKey.KEY_FILE_ENV + ")");
        }
        if (c.encrypted() && !java.security.MessageDigest.isEqual(key.check(c.id()).getBytes(StandardCharsets.US_ASCII),
                c.keyCheck().getBytes(StandardCharsets.US_ASCII))) {
            throw new RepositoryException(RepositoryException.Code.KEY, "key file " + key.file()
                    + " does not hold the key of repository " + objects.location() + " (its key check differs)");
        }
        if (!c.encrypted() && key != null) {
            throw new RepositoryException(RepositoryException.Code.KEY, "repository " + objects.location()
                    + " is not encrypted, and a key file is given (" + key.file() + "): not mixing encrypted and plain "
                    + "objects; leave out --key-file (and $" + RepositoryKey.KEY_FILE_ENV + "), or back up into a "
                    + "repository made by `blksnap repo init --encrypt`");
        }
    }

    /** Whether this repository is encrypted (opened with its key). */
    public boolean encrypted() {
        return key != null;
    }

    /**
     * Creates a repository in a missing or empty directory, or an S3 prefix with nothing under it:
     * an unencrypted one (format version 2) when {@code keyFile} is null, else an encrypted one
     * (version 3) with a new key written to {@code keyFile} (mode 0600, never over an existing
     * file). The key file is made only once the location is known to be empty, and removed again
     * if the config cannot be written.
     *
     * @return the new repository's id
     * @throws RepositoryException KEY the key file exists; IO the location is not empty or cannot be written
     */
    public static String init(RepositoryLocation where, Path keyFile) throws RepositoryException {
        try (ObjectStore objects = storeFor(where)) {
            try {
                readConfig(objects);
                throw new RepositoryException(RepositoryException.Code.IO, "a repository exists at " + objects.location()
                        + "; not making another over it");
            } catch (RepositoryException e) {
                if (e.code() != RepositoryException.Code.NOT_FOUND) {
                    throw e;
                }
            }
            if (!isEmpty(objects, where)) {
                throw new RepositoryException(RepositoryException.Code.IO, objects.location()
                        + " is not empty: not making a repository over other files");
            }
            RepositoryKey key = keyFile == null ? null : RepositoryKey.create(keyFile);
            try {
                Config c = create(objects, where, key);
                if (c == null) {
                    throw new RepositoryException(RepositoryException.Code.IO, "another writer made a repository at "
                            + objects.location() + " at the same time");
                }
                return c.id();
            } catch (RepositoryException | RuntimeException e) {
                if (keyFile != null) {
                    try {
                        java.nio.file.Files.deleteIfExists(keyFile);
                    } catch (java.io.IOException x) {
                        e.addSuppressed(x);
                    }
                }
                throw e;
            }
        }
    }

    private static boolean isEmpty(ObjectStore objects, RepositoryLocation where) throws RepositoryException {
        return switch (where) {
            case RepositoryLocation.Directory d -> isEmptyDir(d.dir());
            case RepositoryLocation.S3 s -> objects.list("").isEmpty();
        };
    }

    /**
     * How long a writer that finds a place neither empty nor a repository waits for another writer's
     * creation of it to show its config: polls of {@link #CREATION_WAIT_POLL_MILLIS} ms (2 s in all).
     */
    private static final int CREATION_WAIT_POLLS = 40;
    private static final long CREATION_WAIT_POLL_MILLIS = 50;

    private static Config createIfEmpty(ObjectStore objects, RepositoryLocation where, RepositoryKey key)
            throws RepositoryException {
        try {
            return readConfig(objects);
        } catch (RepositoryException e) {
            if (e.code() != RepositoryException.Code.NOT_FOUND) {
                throw e;
            }
            if (key != null) {
                throw new RepositoryException(RepositoryException.Code.NOT_FOUND, "no repository at " + objects.location()
                        + ", and a key file is given (" + key.file() + "): an encrypted repository is made by `blksnap "
                        + "repo init --repo " + objects.location() + " --encrypt --key-file NEW_FILE`");
            }
        }
        if (!isEmpty(objects, where)) {
            // Another writer may be creating it right now (its config goes first, through a temporary
            // object): wait a little for that config before calling the place foreign.
            for (int i = 0; i < CREATION_WAIT_POLLS; i++) {
                try {
                    return readConfig(objects);
                } catch (RepositoryException e) {
                    if (e.code() != RepositoryException.Code.NOT_FOUND) {
                        throw e;
                    }
                }
                try {
                    Thread.sleep(CREATION_WAIT_POLL_MILLIS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new RepositoryException(RepositoryException.Code.IO, "interrupted while waiting for the "
                            + "repository at " + objects.location() + " to be created", e);
                }
            }
            throw new RepositoryException(RepositoryException.Code.NOT_FOUND, "no repository at " + objects.location()
                    + " (no " + RepositoryLayout.CONFIG + ", and it is not empty: not creating one over other files)");
        }
        Config c = create(objects, where, null);
        return c != null ? c : readConfig(objects); // null: another writer created it first
    }

    /** Writes a new config (and a directory's folders); null if a config appeared meanwhile. */
    private static Config create(ObjectStore objects, RepositoryLocation where, RepositoryKey key) throws RepositoryException {
        String id = UUID.randomUUID().toString();
        String config = key == null
                ? RepositoryLayout.CONFIG_MAGIC + "\nversion " + RepositoryLayout.VERSION + "\nid " + id + "\n"
                : RepositoryLayout.CONFIG_MAGIC + "\nversion " + RepositoryLayout.VERSION_ENCRYPTED + "\nid " + id + "\n"
                        + CryptoDescriptor.CONFIG_ENCRYPTION + " " + CryptoDescriptor.CONFIG_CIPHER + "\n"
                        + CryptoDescriptor.CONFIG_KEY_CHECK + " " + key.check(id) + "\n";
        if (!objects.putIfAbsent(RepositoryLayout.CONFIG, config.getBytes(StandardCharsets.UTF_8))) {
            return null;
        }
        if (where instanceof RepositoryLocation.Directory d) {
            try {
                for (String sub : List.of(RepositoryLayout.PACKS, RepositoryLayout.POINTS, RepositoryLayout.INDEX,
                        RepositoryLayout.SESSIONS, RepositoryLayout.GC, RepositoryLayout.TMP)) {
                    java.nio.file.Files.createDirectories(d.dir().resolve(sub));
                }
            } catch (java.io.IOException x) {
                throw RepositoryException.io("cannot create the directories of " + d.dir(), x);
            }
        }
        return readConfig(objects);
    }

    private static boolean isEmptyDir(Path dir) throws RepositoryException {
        if (!java.nio.file.Files.exists(dir)) {
            return true;
        }
        if (!java.nio.file.Files.isDirectory(dir)) {
            return false;
        }
        try (var s = java.nio.file.Files.list(dir)) {
            return s.findAny().isEmpty();
        } catch (java.io.IOException e) {
            throw RepositoryException.io("cannot list " + dir, e);
        }
    }

    /**
     * Makes a version 1 repository a version 2 one: one index object listing every pack's trailer
     * (so writers need not read the packs), then the config. A version 1 tool refuses it from then
     * on with VERSION: it would take its old lock and not follow gc's rules.
     */
    private static void upgrade(ObjectStore objects, Config c, Consumer<String> warn) throws RepositoryException {
        List<ChunkStore.SealedPack> packs = new ArrayList<>();
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.PACKS + "/")) {
            if (!e.key().endsWith(PackDescriptor.SUFFIX)) {
                continue;
            }
            Map<Sha256, Ref> refs = new HashMap<>();
            try {
                PackScan.readTrailer(objects, e.key(), e.sizeBytes(), refs);
            } catch (RepositoryException x) {
                if (x.code() != RepositoryException.Code.DAMAGED) {
                    throw x;
                }
                warn.accept(x.getMessage() + "; its chunks are not reused");
                continue;
            }
            List<byte[]> entries = new ArrayList<>();
            for (Ref r : refs.values()) {
                java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(PackDescriptor.ENTRY_BYTES);
                r.hash().write(b);
                b.put((byte) r.kind()).put((byte) 0).putShort((short) 0).putInt((int) r.offsetBytes()).putInt(r.lengthBytes());
                entries.add(b.array());
            }
            packs.add(new ChunkStore.SealedPack(PackScan.packId(e.key()), entries));
        }
        if (!packs.isEmpty()) {
            objects.put(RepositoryLayout.indexKey("upgrade-" + UUID.randomUUID()), BlobIndexDescriptor.encode(packs));
        }
        String config = RepositoryLayout.CONFIG_MAGIC + "\nversion " + RepositoryLayout.VERSION + "\nid " + c.id() + "\n";
        objects.put(RepositoryLayout.CONFIG, config.getBytes(StandardCharsets.UTF_8));
        warn.accept("upgraded repository " + objects.location() + " from format version 1 to " + RepositoryLayout.VERSION
                + " (several writers may now share it; blksnap versions before this one refuse it)");
    }

    /**
     * Makes this repository format version 4 (RepositoryLayout) before gc first moves a blob a ref
     * names or drops a copy of one: version 2 and 3 readers take a ref's place as exact, and
     * would report the moved blobs as damaged (and their gc would remove the packs gc made);
     * from now on they refuse the repository with VERSION. Only the version line changes (id,
     * encryption and key check stay). Nothing is done for a repository of version 4 already.
     *
     * @return whether the config was rewritten
     */
    boolean allowRelocation() throws RepositoryException {
        Config c = readConfig(objects);
        if (c.version() == RepositoryLayout.VERSION_RELOCATABLE) {
            return false;
        }
        if (c.version() != RepositoryLayout.VERSION && c.version() != RepositoryLayout.VERSION_ENCRYPTED) {
            throw new IllegalStateException("repository " + location() + " is of format version " + c.version()
                    + ", not 2 or 3 (open it for maintenance first: that upgrades version 1)");
        }
        String text = new String(objects.get(RepositoryLayout.CONFIG, RepositoryLayout.MAX_CONFIG_BYTES),
                StandardCharsets.UTF_8);
        String was = "\nversion " + c.version() + "\n";
        if (!text.contains(was)) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, objects.describe(RepositoryLayout.CONFIG)
                    + " has no line 'version " + c.version() + "'");
        }
        objects.put(RepositoryLayout.CONFIG, text.replaceFirst(was, "\nversion " + RepositoryLayout.VERSION_RELOCATABLE
                + "\n").getBytes(StandardCharsets.UTF_8));
        warn.accept("repository " + location() + " is now of format version " + RepositoryLayout.VERSION_RELOCATABLE
                + " (gc moves blobs out of mostly unused packs; blksnap versions before this one refuse it; "
                + "`gc --repack-below 0` keeps a repository readable by them)");
        return true;
    }

    /** The format version in the repository's config now (read again). */
    int formatVersion() throws RepositoryException {
        return readConfig(objects).version();
    }

    private static Config readConfig(ObjectStore objects) throws RepositoryException {
        byte[] bytes;
        try {
            bytes = objects.get(RepositoryLayout.CONFIG, RepositoryLayout.MAX_CONFIG_BYTES);
        } catch (RepositoryException e) {
            if (e.code() != RepositoryException.Code.NOT_FOUND) {
                throw e.code() == RepositoryException.Code.DAMAGED ? new RepositoryException(e.code(), e.getMessage()
                        + ": not a repository config") : e;
            }
            throw new RepositoryException(RepositoryException.Code.NOT_FOUND, "no repository at " + objects.location()
                    + " (no " + RepositoryLayout.CONFIG + "); `blksnap backup --repo " + objects.location()
                    + "` creates one in a missing or empty directory or S3 prefix");
        }
        String config = objects.describe(RepositoryLayout.CONFIG);
        String[] lines = new String(bytes, StandardCharsets.UTF_8).split("\n");
        if (lines.length < 2 || !lines[0].equals(RepositoryLayout.CONFIG_MAGIC) || !lines[1].startsWith("version ")) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, config + " is not a blksnap repository config");
        }
        String version = lines[1].substring("version ".length()).trim();
        int v = switch (version) {
            case "1" -> RepositoryLayout.VERSION_1;
            case "2" -> RepositoryLayout.VERSION;
            case "3" -> RepositoryLayout.VERSION_ENCRYPTED;
            case "4" -> RepositoryLayout.VERSION_RELOCATABLE;
            default -> -1;
        };
        if (v < 0) {
            throw new RepositoryException(RepositoryException.Code.VERSION, "repository " + objects.location()
                    + " has format version " + version + "; this blksnap reads versions 1, " + RepositoryLayout.VERSION
                    + ", " + RepositoryLayout.VERSION_ENCRYPTED + " (encrypted) and " + RepositoryLayout.VERSION_RELOCATABLE
                    + " (blobs moved by gc)");
        }
        String id = lines.length > 2 && lines[2].startsWith("id ") ? lines[2].substring(3).trim() : objects.location();
        String keyCheck = null;
        if (v == RepositoryLayout.VERSION_ENCRYPTED
                || v == RepositoryLayout.VERSION_RELOCATABLE && lines.length > 3 && !lines[3].isBlank()) {
            String cipher = CryptoDescriptor.CONFIG_ENCRYPTION + " " + CryptoDescriptor.CONFIG_CIPHER;
            if (lines.length < 5 || !lines[2].startsWith("id ") || !lines[3].equals(cipher)
                    || !lines[4].matches(CryptoDescriptor.CONFIG_KEY_CHECK + " [0-9a-f]{64}")) {
                throw new RepositoryException(RepositoryException.Code.DAMAGED, config + " of format version " + v + " lacks '"
                        + cipher + "' or its key check");
            }
            keyCheck = lines[4].substring(CryptoDescriptor.CONFIG_KEY_CHECK.length() + 1);
        }
        return new Config(v, id, keyCheck);
    }

    /**
     * What the writers of this host that died left recorded: for each, its {@code snapshot} id and
     * {@code storage} directory, so this writer can destroy and remove them. Empty for a reader.
     */
    public List<Map<String, String>> staleSessions() {
        return staleSessions;
    }

    /** Records {@code entries} (for example the snapshot a backup holds) in this writer's session. */
    public void recordSession(Map<String, String> entries) throws RepositoryException {
        requireWriter();
        session.record(entries);
    }

    private void requireWriter() {
        if (session == null) {
            throw new IllegalStateException("repository " + location() + " is not open for writing");
        }
    }

    /** The repository's directory (a directory repository), or null (S3). */
    public Path dir() {
        return objects instanceof DirectoryStore d ? d.dir() : null;
    }

    /** Where the repository is, for messages: a directory or {@code s3://bucket/prefix}. */
    public String location() {
        return objects.location();
    }

    /** The host name this repository's writer records in its points. */
    public String host() {
        return host;
    }

    /** The repository's id (its config's {@code id}). */
    String repoId() {
        return repoId;
    }

    ObjectStore objects() {
        return objects;
    }

    /**
     * Requests this repository made to its store so far, by kind (S3: {@code PUT}, {@code GET},
     * {@code LIST}, {@code DELETE}, {@code HEAD}, {@code MULTIPART}, {@code PUT_BYTES},
     * {@code GET_BYTES}); empty for a directory. For reports and benchmarks.
     */
    public Map<String, Long> requestCounts() {
        return objects.requestCounts();
    }

    /**
     * Objects by folder ({@code packs}, {@code points}, {@code index}, {@code sessions},
     * {@code gc}): {count, bytes}. One listing of each; for reports and benchmarks.
     */
    public Map<String, long[]> objectCounts() throws RepositoryException {
        Map<String, long[]> m = new java.util.LinkedHashMap<>();
        for (String folder : List.of(RepositoryLayout.PACKS, RepositoryLayout.POINTS, RepositoryLayout.INDEX,
                RepositoryLayout.SESSIONS, RepositoryLayout.GC)) {
            long[] cb = new long[2];
            for (ObjectStore.Entry e : objects.list(folder + "/")) {
                cb[0]++;
                cb[1] += e.sizeBytes();
            }
            m.put(folder, cb);
        }
        return m;
    }

    /** The key of an encrypted repository, or null. */
    RepositoryKey key() {
        return key;
    }

    /**
     * The repository's blob reader, made on the first call. That first call is not thread-safe (as
     * before version 4): {@link PointReader#open}, restore, verify and gc call it from the one
     * thread that drives this repository. The reader it returns is thread-safe, and so is the
     * {@link BlobLocator} in it, which it loads on its first miss.
     */
    BlobReader reader() {
        if (reader == null) {
            reader = new BlobReader(objects, key);
        }
        return reader;
    }

    /** Sets which index objects the next backup deduplicates against (default {@link DedupScope#ALL}). */
    public void dedupScope(DedupScope scope) {
        dedupScope = scope;
    }

    /** The name of this writer's index objects: {@code <host>+<point id>}. */
    String indexName(String pointId) {
        return host + "+" + pointId;
    }

    ChunkStore store() throws RepositoryException {
        requireWriter();
        if (store == null) {
            WriterIndex.Loaded loaded = WriterIndex.load(objects, repoId,
                    dedupScope == DedupScope.HOST ? List.of(host + "+", "upgrade-") : List.of(""), warn);
            store = new ChunkStore(objects, session.id(), loaded.refs(), targetPackBytes, key);
            damagedCopies = loaded.damaged();
            keptIndex = loaded.state();
        }
        return store;
    }

    /**
     * The copies verify recorded damaged, as the writer's {@link #store} loaded them (empty before):
     * an incremental backup reads their blocks again ({@link DeviceBackup}).
     */
    java.util.Set<Ref> damagedCopies() {
        return damagedCopies;
    }

    /** Reports a non-fatal finding to this repository's warning sink. */
    void warn(String message) {
        warn.accept(message);
    }

    /** Every manifest's point or the error reading it, in file name order. */
    record Scan(List<Point> points, List<RepositoryException> damaged) {
    }

    Scan scan() throws RepositoryException {
        List<Point> points = new ArrayList<>();
        List<RepositoryException> damaged = new ArrayList<>();
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.POINTS + "/")) {
            if (!e.key().endsWith(ManifestDescriptor.SUFFIX)) {
                continue;
            }
            try {
                points.add(readManifest(e.key()));
            } catch (RepositoryException x) {
                if (x.code() == RepositoryException.Code.IO || x.code() == RepositoryException.Code.NO_SPACE) {
                    throw x;
                }
                if (x.code() == RepositoryException.Code.NOT_FOUND) {
                    continue; // pruned meanwhile
                }
                damaged.add(x);
            }
        }
        points.sort(Comparator.comparing(Point::time).thenComparing(Point::id));
        return new Scan(points, damaged);
    }

    private Point readManifest(String key) throws RepositoryException {
        String name = key.substring(key.lastIndexOf('/') + 1);
        byte[] bytes;
        try {
            bytes = objects.get(key, ManifestDescriptor.MAX_BYTES);
        } catch (RepositoryException e) {
            if (e.code() == RepositoryException.Code.DAMAGED) {
                bytes = new byte[ManifestDescriptor.MAX_BYTES + 1];
            } else {
                throw e;
            }
        }
        if (this.key != null && bytes.length <= ManifestDescriptor.MAX_BYTES) {
            bytes = this.key.openManifest(key, objects.describe(key), bytes);
        }
        return ManifestDescriptor.decode(objects.describe(key), name, bytes);
    }

    /**
     * Every point, oldest first.
     *
     * @throws RepositoryException DAMAGED or VERSION: a manifest that does not read (named)
     */
    public List<Point> points() throws RepositoryException {
        Scan s = scan();
        if (!s.damaged().isEmpty()) {
            throw s.damaged().getFirst();
        }
        return s.points();
    }

    /**
     * The point {@code id}.
     *
     * @throws RepositoryException NOT_FOUND no such point; DAMAGED its manifest does not read
     */
    public Point point(String id) throws RepositoryException {
        if (!id.matches("[0-9A-Za-z._-]+")) {
            throw new RepositoryException(RepositoryException.Code.NOT_FOUND, "no point '" + id + "' in " + location());
        }
        try {
            return readManifest(RepositoryLayout.pointKey(id));
        } catch (RepositoryException e) {
            if (e.code() != RepositoryException.Code.NOT_FOUND) {
                throw e;
            }
            throw new RepositoryException(RepositoryException.Code.NOT_FOUND, "no point '" + id + "' in " + location()
                    + " (`blksnap points --repo " + location() + "` lists them)");
        }
    }

    /**
     * The newest readable point of {@code device} of this host (or of no recorded host: a version 1
     * point), if any. A manifest that does not read is reported
     * to the warning sink and passed over: an older point of the same generation is a correct base
     * too (the CBT values only grow), and another device's damage must not stop this one's backup.
     */
    public Optional<Point> latest(String device) throws RepositoryException {
        Scan s = scan();
        for (RepositoryException e : s.damaged()) {
            warn.accept(e.getMessage() + "; passed over (blksnap verify reports it)");
        }
        return s.points().stream().filter(p -> p.device().equals(device) && (p.host().isEmpty() || p.host().equals(host)))
                .reduce((a, b) -> b);
    }

    /**
     * Backs up one device's image into a new point (see {@link DeviceBackup}); the point is durable
     * and visible when this returns, and absent if it throws.
     */
    public Point backup(BackupSource source, CbtSource cbt, Progress progress) throws RepositoryException {
        return new DeviceBackup(this, source, cbt, progress).run();
    }

    /** Restores a point to a file, block device or NBD URI (see {@link Restore}). */
    public RestoreResult restore(String pointId, String target, Progress progress) throws RepositoryException {
        return new Restore(this, point(pointId), target, progress).run();
    }

    /** Checks every point, or the point {@code pointId} when not null (see {@link Verify}). */
    public VerifyReport verify(String pointId) throws RepositoryException {
        return new Verify(this, pointId).run();
    }

    /**
     * Applies a retention policy: removes the manifests of the points it does not keep (unless
     * {@code dryRun}). Needs {@link #openForMaintenance}; safe beside writers (it only removes
     * manifests). The chunks of removed points stay until {@link #gc}.
     */
    public List<Retention.Decision> prune(Retention policy, boolean dryRun) throws RepositoryException {
        requireMaintenance();
        List<Retention.Decision> decisions = policy.apply(points());
        if (!dryRun) {
            for (Retention.Decision d : decisions) {
                if (!d.keep()) {
                    objects.delete(RepositoryLayout.pointKey(d.point().id()));
                }
            }
        }
        return decisions;
    }

    private void requireMaintenance() {
        if (!maintenance) {
            throw new IllegalStateException("repository " + location() + " is not open for maintenance");
        }
    }

    /**
     * Removes the packs no point uses, by the rules of {@link GarbageCollector} (safe while other
     * hosts back up). Needs {@link #openForMaintenance}.
     *
     * @param grace time between a pack's condemnation and its removal, at least
     * @throws RepositoryException LOCKED another gc runs
     */
    public GcResult gc(java.time.Duration grace, boolean dryRun) throws RepositoryException {
        return gc(grace, dryRun, GarbageCollector.DEFAULT_REPACK_BELOW);
    }

    /**
     * {@link #gc(java.time.Duration, boolean)}, repacking each pack whose live blobs are less than
     * {@code repackBelow} of its blob bytes (0: never, and a repository of format version 2 or 3
     * stays readable by older blksnap; 0.5 the default; 1: every pack with a dead byte). The first
     * gc that moves a blob makes the repository format version 4.
     *
     * @throws IllegalArgumentException repackBelow not within 0..1
     */
    public GcResult gc(java.time.Duration grace, boolean dryRun, double repackBelow) throws RepositoryException {
        requireMaintenance();
        return new GarbageCollector(this, grace, dryRun, repackBelow, warn).run();
    }

    /**
     * What gc found: points marked; packs kept (no condemned list names them); packs waiting on a
     * condemned list (condemned less than the grace period ago, or while a backup that began before
     * runs); packs removed and their bytes (freed); packs whose live blobs were copied into new
     * packs (then condemned), the stored bytes copied, and the new packs written. A dry run says
     * what it would do.
     */
    public record GcResult(int points, int packsKept, int packsWaiting, List<String> packsRemoved, long bytesRemoved,
                           boolean dryRun, List<String> packsRepacked, long bytesMoved, int packsWritten) {
    }

    /**
     * Makes a point visible: the index object of the packs sealed since this writer's previous
     * point (the packs are durable: the caller sealed them), then the manifest. From here on the
     * point exists.
     */
    void commit(Point p) throws RepositoryException {
        requireWriter();
        session.checkAlive();
        List<ChunkStore.SealedPack> sealed = store().drainSealed();
        if (!sealed.isEmpty()) {
            String name = indexName(p.id());
            objects.put(RepositoryLayout.indexKey(name), BlobIndexDescriptor.encode(sealed));
            keptIndex.add(name + RepositoryLayout.INDEX_SUFFIX, sealed);
        }
        String key = RepositoryLayout.pointKey(p.id());
        byte[] manifest = ManifestDescriptor.encode(p);
        if (this.key != null) {
            manifest = this.key.sealManifest(key, manifest);
        }
        if (!objects.putIfAbsent(key, manifest)) {
            throw new RepositoryException(RepositoryException.Code.IO, "manifest " + objects.describe(key)
                    + " exists already: point ids collided; run the backup again");
        }
    }

    /** Ends the writer session (removing its markers) and closes the store. */
    @Override
    public void close() {
        if (store != null) {
            store.close();
        }
        if (session != null) {
            session.close();
        }
        objects.close();
    }

    /** What a restore wrote: the point, the target, bytes written (data) and bytes left as holes or zeroed. */
    public record RestoreResult(String point, String device, String target, long sizeBytes, long dataBytes,
                                long zeroBytes, double seconds) {
    }

    /**
     * What verify found.
     *
     * @param points   points checked
     * @param blobs    distinct chunks and nodes read and re-hashed
     * @param bytes    raw bytes of those blobs
     * @param problems each damaged or missing blob (or unreadable manifest) with the points that use it
     * @param damagedCopies each damaged copy met (also of blobs a good copy elsewhere answered), and
     *                      whether it was recorded so that backups store the content anew
     */
    public record VerifyReport(int points, long blobs, long bytes, java.util.List<Problem> problems,
                               java.util.List<String> damagedCopies) {
        public boolean ok() {
            return problems.isEmpty();
        }
    }

    /** One thing wrong: {@code what} (a chunk, node or manifest), {@code why}, and the points it breaks. */
    public record Problem(String what, String why, java.util.List<String> points) {
    }

    /**
     * Where a backup reads a device: its snapshot image (export name {@code image}, at {@code uri}
     * over NBD, opened by {@code opener}), and the tracker's state at the take.
     */
    public record BackupSource(String device, String image, String uri, ImageReader.Opener opener, long sizeBytes,
                               int blockSizeBytes, String generation, long snapNumber) {
        /** A source read over NBD at {@code uri}. */
        public BackupSource(String device, String uri, long sizeBytes, int blockSizeBytes, String generation,
                            long snapNumber) {
            this(device, null, uri, ImageReader.Opener.NBD, sizeBytes, blockSizeBytes, generation, snapNumber);
        }
    }

    /** The tracker's CBT read map of the source: one byte per tracking block, read only for an incremental. */
    @FunctionalInterface
    public interface CbtSource {
        byte[] readMap() throws Exception;
    }

    /** Progress of long work: bytes done of a total, called from any thread, often. */
    @FunctionalInterface
    public interface Progress {
        Progress NONE = (done, total) -> { };

        void update(long doneBytes, long totalBytes);

        /** Where one device's backup spent its time, once, when its point is committed. */
        default void finished(PointPhases phases) {
        }
    }

    /**
     * Where one point's backup went, in seconds. {@code mapSeconds}, {@code readAndStoreSeconds},
     * {@code indexSeconds}, {@code sealSeconds} and {@code commitSeconds} are wall time one after the
     * other (reading the CBT map; reading the changed blocks and storing them; writing the index tree;
     * sealing the last pack; writing the manifest); {@code nbdSeconds}, {@code hashSeconds} and
     * {@code storeSeconds} are summed over the reader threads that overlap inside
     * {@code readAndStoreSeconds} (waiting for NBD replies; zero checks, copies and SHA-256; compressing and
     * appending to packs).
     */
    public record PointPhases(double mapSeconds, double readAndStoreSeconds, double nbdSeconds, double hashSeconds,
                              double storeSeconds, double indexSeconds, double sealSeconds, double commitSeconds) {
    }
}
