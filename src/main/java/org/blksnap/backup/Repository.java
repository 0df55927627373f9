package org.blksnap.backup;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.function.Consumer;

/**
 * A backup repository (a directory, {@link RepositoryLayout}): restore points of devices whose
 * chunks are stored once, by content, however many points and devices use them. Opened for reading
 * ({@link #openForReading}: points, restore, verify; any number at once, also beside a writer) or
 * for writing ({@link #openForWriting}: backup; one at a time, by an OS lock).
 *
 * <p>Not thread-safe as a whole: one thread drives it (each operation uses threads of its own).
 * Every failure is a {@link RepositoryException} whose code says what kind it is.
 */
public final class Repository implements AutoCloseable {
    private final Path dir;
    private final FileChannel lockChannel;
    private final FileLock lock;
    private final Map<String, String> staleSession;
    private final long targetPackBytes;
    private final Consumer<String> warn;
    private ChunkStore store;
    private BlobReader reader;

    private Repository(Path dir, FileChannel lockChannel, FileLock lock, Map<String, String> staleSession,
                       long targetPackBytes, Consumer<String> warn) {
        this.dir = dir;
        this.lockChannel = lockChannel;
        this.lock = lock;
        this.staleSession = staleSession;
        this.targetPackBytes = targetPackBytes;
        this.warn = warn;
    }

    /**
     * Opens an existing repository to read it.
     *
     * @throws RepositoryException NOT_FOUND no repository there; VERSION another format; DAMAGED a bad config
     */
    public static Repository openForReading(Path dir) throws RepositoryException {
        checkConfig(dir);
        return new Repository(dir, null, null, Map.of(), PackDescriptor.TARGET_PACK_BYTES, m -> { });
    }

    /**
     * Opens a repository to write points, creating it when {@code dir} is missing or empty; takes
     * the lock and removes what a killed writer left in {@code tmp/}.
     *
     * @param targetPackBytes size at which a pack is sealed ({@link PackDescriptor#TARGET_PACK_BYTES} normally)
     * @param warn            where non-fatal findings go (a pack whose trailer is damaged)
     * @throws RepositoryException LOCKED another writer holds it; VERSION, DAMAGED, NOT_FOUND as for reading
     */
    public static Repository openForWriting(Path dir, long targetPackBytes, Consumer<String> warn)
            throws RepositoryException {
        try {
            if (!Files.exists(dir) || (Files.isDirectory(dir) && isEmpty(dir))) {
                create(dir);
            }
        } catch (IOException e) {
            throw RepositoryException.io("cannot create a repository at " + dir, e);
        }
        checkConfig(dir);
        Path lockFile = dir.resolve(RepositoryLayout.LOCK);
        FileChannel ch;
        try {
            ch = FileChannel.open(lockFile, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
        } catch (IOException e) {
            throw RepositoryException.io("cannot open " + lockFile, e);
        }
        FileLock lock;
        try {
            lock = ch.tryLock();
        } catch (OverlappingFileLockException e) {
            lock = null;
        } catch (IOException e) {
            close(ch);
            throw RepositoryException.io("cannot lock " + lockFile, e);
        }
        try {
            Map<String, String> previous = readSession(ch);
            if (lock == null) {
                close(ch);
                throw new RepositoryException(RepositoryException.Code.LOCKED, "repository " + dir
                        + " is locked by another writer (" + (previous.containsKey("pid") ? "pid " + previous.get("pid")
                        : "a process") + "); try again when it is done");
            }
            Repository repo = new Repository(dir, ch, lock, previous, targetPackBytes, warn);
            repo.writeSession(Map.of());
            repo.cleanTmp();
            return repo;
        } catch (IOException e) {
            close(ch);
            throw RepositoryException.io("cannot read " + lockFile, e);
        }
    }

    private static boolean isEmpty(Path dir) throws IOException {
        try (DirectoryStream<Path> s = Files.newDirectoryStream(dir)) {
            return !s.iterator().hasNext();
        }
    }

    private static void create(Path dir) throws IOException {
        Files.createDirectories(dir);
        for (String sub : List.of(RepositoryLayout.PACKS, RepositoryLayout.POINTS, RepositoryLayout.TMP)) {
            Files.createDirectories(dir.resolve(sub));
        }
        String config = RepositoryLayout.CONFIG_MAGIC + "\nversion " + RepositoryLayout.VERSION + "\nid " + UUID.randomUUID()
                + "\n";
        Durable.writeAtomically(dir.resolve(RepositoryLayout.TMP).resolve(RepositoryLayout.CONFIG),
                dir.resolve(RepositoryLayout.CONFIG), config.getBytes(StandardCharsets.UTF_8));
    }

    private static void checkConfig(Path dir) throws RepositoryException {
        Path config = dir.resolve(RepositoryLayout.CONFIG);
        byte[] bytes;
        try {
            if (Files.size(config) > RepositoryLayout.MAX_CONFIG_BYTES) {
                throw new RepositoryException(RepositoryException.Code.DAMAGED, config + " is larger than "
                        + RepositoryLayout.MAX_CONFIG_BYTES + " bytes: not a repository config");
            }
            bytes = Files.readAllBytes(config);
        } catch (NoSuchFileException e) {
            throw new RepositoryException(RepositoryException.Code.NOT_FOUND, "no repository at " + dir + " (no "
                    + RepositoryLayout.CONFIG + " file); `blksnap backup --repo " + dir + "` creates one in a missing or empty directory");
        } catch (IOException e) {
            throw RepositoryException.io("cannot read " + config, e);
        }
        String[] lines = new String(bytes, StandardCharsets.UTF_8).split("\n");
        if (lines.length < 2 || !lines[0].equals(RepositoryLayout.CONFIG_MAGIC) || !lines[1].startsWith("version ")) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, config + " is not a blksnap repository config");
        }
        String version = lines[1].substring("version ".length()).trim();
        if (!version.equals(Integer.toString(RepositoryLayout.VERSION))) {
            throw new RepositoryException(RepositoryException.Code.VERSION, "repository " + dir + " has format version "
                    + version + "; this blksnap reads version " + RepositoryLayout.VERSION);
        }
    }

    private static Map<String, String> readSession(FileChannel ch) throws IOException {
        long size = Math.min(ch.size(), RepositoryLayout.MAX_CONFIG_BYTES);
        ByteBuffer buf = ByteBuffer.allocate((int) size);
        while (buf.hasRemaining() && ch.read(buf, buf.position()) > 0) {
            // positional reads until full
        }
        Map<String, String> session = new LinkedHashMap<>();
        for (String line : new String(buf.array(), 0, buf.position(), StandardCharsets.UTF_8).split("\n")) {
            int sp = line.indexOf(' ');
            if (sp > 0) {
                session.put(line.substring(0, sp), line.substring(sp + 1));
            }
        }
        return session;
    }

    /**
     * What the previous writer recorded in the lock file and did not clear because it died: its
     * {@code snapshot} id and {@code storage} directory, so this writer can destroy and remove them.
     * Empty after a clean exit or for a reader.
     */
    public Map<String, String> staleSession() {
        return staleSession;
    }

    /** Records {@code entries} (for example the snapshot a backup holds) in the lock file, with our pid. */
    public void recordSession(Map<String, String> entries) throws RepositoryException {
        try {
            writeSession(entries);
        } catch (IOException e) {
            throw RepositoryException.io("cannot write " + dir.resolve(RepositoryLayout.LOCK), e);
        }
    }

    private void writeSession(Map<String, String> entries) throws IOException {
        StringBuilder sb = new StringBuilder("pid " + ProcessHandle.current().pid() + "\n");
        entries.forEach((k, v) -> sb.append(k).append(' ').append(v).append('\n'));
        lockChannel.truncate(0);
        ByteBuffer buf = ByteBuffer.wrap(sb.toString().getBytes(StandardCharsets.UTF_8));
        long pos = 0;
        while (buf.hasRemaining()) {
            pos += lockChannel.write(buf, pos);
        }
        lockChannel.force(true);
    }

    private void cleanTmp() throws IOException {
        try (DirectoryStream<Path> s = Files.newDirectoryStream(dir.resolve(RepositoryLayout.TMP))) {
            for (Path p : s) {
                Files.deleteIfExists(p);
            }
        }
    }

    /** The repository's directory. */
    public Path dir() {
        return dir;
    }

    Path packsDir() {
        return dir.resolve(RepositoryLayout.PACKS);
    }

    Path pointsDir() {
        return dir.resolve(RepositoryLayout.POINTS);
    }

    Path tmpDir() {
        return dir.resolve(RepositoryLayout.TMP);
    }

    BlobReader reader() {
        if (reader == null) {
            reader = new BlobReader(packsDir());
        }
        return reader;
    }

    ChunkStore store() throws RepositoryException {
        if (lock == null) {
            throw new IllegalStateException("repository " + dir + " is open for reading");
        }
        if (store == null) {
            store = new ChunkStore(packsDir(), tmpDir(), PackScan.index(packsDir(), warn), targetPackBytes);
        }
        return store;
    }

    /** Every manifest's point or the error reading it, in file name order. */
    record Scan(List<Point> points, List<RepositoryException> damaged) {
    }

    Scan scan() throws RepositoryException {
        List<Point> points = new ArrayList<>();
        List<RepositoryException> damaged = new ArrayList<>();
        List<Path> files = new ArrayList<>();
        try (DirectoryStream<Path> s = Files.newDirectoryStream(pointsDir(), "*" + ManifestDescriptor.SUFFIX)) {
            s.forEach(files::add);
        } catch (IOException e) {
            throw RepositoryException.io("cannot list " + pointsDir(), e);
        }
        files.sort(Comparator.comparing(Path::toString));
        for (Path f : files) {
            try {
                points.add(readManifest(f));
            } catch (RepositoryException e) {
                if (e.code() == RepositoryException.Code.IO || e.code() == RepositoryException.Code.NO_SPACE) {
                    throw e;
                }
                damaged.add(e);
            }
        }
        points.sort(Comparator.comparing(Point::time).thenComparing(Point::id));
        return new Scan(points, damaged);
    }

    private static Point readManifest(Path f) throws RepositoryException {
        try {
            if (Files.size(f) > ManifestDescriptor.MAX_BYTES) {
                return ManifestDescriptor.decode(f, new byte[ManifestDescriptor.MAX_BYTES + 1]);
            }
            return ManifestDescriptor.decode(f, Files.readAllBytes(f));
        } catch (IOException e) {
            throw RepositoryException.io("cannot read manifest " + f, e);
        }
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
            throw new RepositoryException(RepositoryException.Code.NOT_FOUND, "no point '" + id + "' in " + dir);
        }
        Path f = pointsDir().resolve(id + ManifestDescriptor.SUFFIX);
        if (!Files.exists(f)) {
            throw new RepositoryException(RepositoryException.Code.NOT_FOUND, "no point '" + id + "' in " + dir
                    + " (`blksnap points --repo " + dir + "` lists them)");
        }
        return readManifest(f);
    }

    /**
     * The newest readable point of {@code device}, if any. A manifest that does not read is reported
     * to the warning sink and passed over: an older point of the same generation is a correct base
     * too (the CBT values only grow), and another device's damage must not stop this one's backup.
     */
    public Optional<Point> latest(String device) throws RepositoryException {
        Scan s = scan();
        for (RepositoryException e : s.damaged()) {
            warn.accept(e.getMessage() + "; passed over (blksnap verify reports it)");
        }
        return s.points().stream().filter(p -> p.device().equals(device)).reduce((a, b) -> b);
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
     * {@code dryRun}). Needs the writer lock. The chunks of removed points stay until {@link #gc}.
     */
    public List<Retention.Decision> prune(Retention policy, boolean dryRun) throws RepositoryException {
        if (lock == null) {
            throw new IllegalStateException("repository " + dir + " is open for reading");
        }
        List<Retention.Decision> decisions = policy.apply(points());
        if (!dryRun) {
            try {
                for (Retention.Decision d : decisions) {
                    if (!d.keep()) {
                        Files.delete(pointsDir().resolve(d.point().id() + ManifestDescriptor.SUFFIX));
                    }
                }
                Durable.fsyncDirectory(pointsDir());
            } catch (IOException e) {
                throw RepositoryException.io("cannot remove manifests in " + pointsDir(), e);
            }
        }
        return decisions;
    }

    /** Removes the packs no point uses that are older than {@code grace} (see {@link GarbageCollector}). Needs the writer lock. */
    public GcResult gc(java.time.Duration grace, boolean dryRun) throws RepositoryException {
        if (lock == null) {
            throw new IllegalStateException("repository " + dir + " is open for reading");
        }
        return new GarbageCollector(this, grace, dryRun).run();
    }

    /** What gc found: packs kept because a point uses them, unused but younger than the grace period, and removed. */
    public record GcResult(int points, int packsKept, int packsYoung, List<String> packsRemoved, long bytesRemoved,
                           boolean dryRun) {
    }

    /** Writes a point's manifest durably: from here on the point exists. */
    void commit(Point p) throws RepositoryException {
        Path target = pointsDir().resolve(p.id() + ManifestDescriptor.SUFFIX);
        try {
            Durable.writeAtomically(tmpDir().resolve(p.id() + ManifestDescriptor.SUFFIX), target, ManifestDescriptor.encode(p));
        } catch (IOException e) {
            throw RepositoryException.io("cannot write manifest " + target, e);
        }
    }

    /** Releases the lock (a writer) and closes every file. */
    @Override
    public void close() {
        if (store != null) {
            store.close();
        }
        if (reader != null) {
            reader.close();
        }
        if (lock != null) {
            try {
                writeSession(Map.of());
                lock.release();
            } catch (IOException e) {
                // closing the channel releases the lock as well
            }
            close(lockChannel);
        }
    }

    private static void close(FileChannel ch) {
        try {
            ch.close();
        } catch (IOException e) {
            // nothing was written through it that matters
        }
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
     */
    public record VerifyReport(int points, long blobs, long bytes, java.util.List<Problem> problems) {
        public boolean ok() {
            return problems.isEmpty();
        }
    }

    /** One thing wrong: {@code what} (a chunk, node or manifest), {@code why}, and the points it breaks. */
    public record Problem(String what, String why, java.util.List<String> points) {
    }

    /** Where a backup reads a device: its snapshot image over NBD, and the tracker's state at the take. */
    public record BackupSource(String device, String uri, long sizeBytes, int blockSizeBytes, String generation,
                               long snapNumber) {
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
    }
}
