package org.blksnap.backup;

import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;

/**
 * Removes packs no point uses, safely while other hosts back up into the same repository, with
 * no lock between writers and gc: a two-phase mark with the store's own timestamps.
 *
 * <ol>
 * <li><b>Condemn.</b> gc marks every pack a point's tree uses and writes the unused ones to a new
 *     {@code gc/condemned-<id>} list. From then on a writer that begins (its session's start marker
 *     is newer than the list) leaves those packs out of what it deduplicates against, so it never
 *     starts to reference them.</li>
 * <li><b>Sweep.</b> A pack of a condemned list written at time C is removed when (a) C is older
 *     than the grace period, (b) no live writer session began before C + {@link #MARGIN} (such a
 *     writer may hold a ref to the pack from before the list; a session is live until its markers
 *     are {@link WriterSession#STALE}), and (c) a fresh mark, taken after the session listing, still
 *     finds no point using it (a writer that finished in the meantime has its manifest visible by
 *     then; a used pack is taken off the list). Index objects naming removed packs are rewritten
 *     without them before the packs go.</li>
 * </ol>
 * One gc run does both: it sweeps older lists, condemns, and sweeps its own list at once when
 * nothing blocks it (grace zero, no older writer live). Two gc runs at once: each writes a
 * {@code gc/lock-<id>} and lists the others; one that sees another live lock removes its own and
 * stops with {@code LOCKED} (both may stop; neither proceeds unsafely). A pack that some point uses
 * is kept whole: format version 2 cannot move blobs (refs carry their pack and offset).
 * Not thread-safe: {@link #run} once.
 */
final class GarbageCollector {
    /** Unfinished uploads (tmp files, incomplete multipart uploads) older than this are dropped by gc. */
    static final Duration INCOMPLETE_AGE = Duration.ofDays(1);
    /** Resolution of the store's timestamps (S3 gives seconds), with room. */
    static final Duration MARGIN = Duration.ofSeconds(2);
    private static final SecureRandom RANDOM = new SecureRandom();

    private final Repository repo;
    private final ObjectStore objects;
    private final Duration grace;
    private final boolean dryRun;
    private final Consumer<String> warn;
    /** Packs each point's tree uses, by point id, so a second mark walks only new points. */
    private final Map<String, Set<PackId>> marked = new HashMap<>();
    private int points;
    private final List<String> removed = new ArrayList<>();
    private long removedBytes;

    GarbageCollector(Repository repo, Duration grace, boolean dryRun, Consumer<String> warn) {
        this.repo = repo;
        this.objects = repo.objects();
        this.grace = grace;
        this.dryRun = dryRun;
        this.warn = warn;
    }

    Repository.GcResult run() throws RepositoryException {
        String lockKey = RepositoryLayout.GC_LOCK_PREFIX + randomHex();
        try {
            Instant now = lockTime(lockKey);
            // a live writer's pack may be open for a while (a slow incremental): only day-old leftovers go
            objects.dropIncomplete(null, now.minus(INCOMPLETE_AGE));
            Map<String, ObjectStore.Entry> packs = new HashMap<>();
            for (ObjectStore.Entry e : objects.list(RepositoryLayout.PACKS + "/")) {
                if (e.key().endsWith(PackDescriptor.SUFFIX)) {
                    packs.put(e.key(), e);
                }
            }
            sweep(now, packs);
            Set<PackId> used = mark();
            Set<PackId> alreadyCondemned = WriterIndex.condemned(objects);
            Set<PackId> unused = new HashSet<>();
            for (String key : packs.keySet()) {
                PackId id = PackScan.packId(key);
                if (!used.contains(id) && !alreadyCondemned.contains(id)) {
                    unused.add(id);
                }
            }
            if (!unused.isEmpty() && !dryRun) {
                objects.put(RepositoryLayout.CONDEMNED_PREFIX + randomHex(), WriterIndex.encodeCondemned(unused));
                sweep(lockTime(lockKey), packs);
            } else if (!unused.isEmpty() && grace.isZero()
                    && WriterSession.list(objects).stream().noneMatch(m -> m.aliveAt(now))) {
                for (PackId id : unused) { // what this run would condemn and, with nothing to wait for, remove at once
                    removed.add(id + PackDescriptor.SUFFIX);
                    removedBytes += packs.get(RepositoryLayout.packKey(id)).sizeBytes();
                }
            }
            int waiting = 0;
            int kept = 0;
            Set<PackId> finalUsed = mark();
            Set<String> gone = new HashSet<>(removed);
            for (String key : packs.keySet()) {
                String name = key.substring(key.lastIndexOf('/') + 1);
                if (gone.contains(name)) {
                    continue;
                }
                if (finalUsed.contains(PackScan.packId(key))) {
                    kept++;
                } else {
                    waiting++;
                }
            }
            return new Repository.GcResult(points, kept, waiting, removed.stream().sorted().toList(), removedBytes, dryRun);
        } finally {
            objects.delete(lockKey);
        }
    }

    private static String randomHex() {
        byte[] b = new byte[8];
        RANDOM.nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    /**
     * Rewrites our lock (the store's clock gives "now") and checks no other gc runs.
     *
     * @throws RepositoryException LOCKED another gc's lock is live
     */
    private Instant lockTime(String lockKey) throws RepositoryException {
        String note = "host " + repo.host() + "\npid " + ProcessHandle.current().pid() + "\n";
        objects.put(lockKey, note.getBytes(StandardCharsets.UTF_8));
        Instant mine = null;
        List<ObjectStore.Entry> others = new ArrayList<>();
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.GC_LOCK_PREFIX)) {
            if (e.key().equals(lockKey)) {
                mine = e.lastModified();
            } else {
                others.add(e);
            }
        }
        if (mine == null) {
            throw new RepositoryException(RepositoryException.Code.IO, objects.describe(lockKey)
                    + " is not listed after it was written: the store lists inconsistently; gc stops");
        }
        for (ObjectStore.Entry e : others) {
            if (e.lastModified().isBefore(mine.minus(WriterSession.STALE))) {
                warn.accept("gc: removing " + objects.describe(e.key()) + ", a lock older than " + WriterSession.STALE.toMinutes()
                        + " minutes (a gc that died)");
                objects.delete(e.key());
                continue;
            }
            String holder = "";
            try {
                Map<String, String> kv = WriterSession.parse(objects.get(e.key(), RepositoryLayout.MAX_CONFIG_BYTES));
                holder = " (host " + kv.getOrDefault("host", "?") + ", pid " + kv.getOrDefault("pid", "?") + ")";
            } catch (RepositoryException x) {
                // ended meanwhile
            }
            throw new RepositoryException(RepositoryException.Code.LOCKED, "another gc is running on " + objects.location()
                    + holder + " since " + e.lastModified() + " (" + objects.describe(e.key())
                    + "); try again when it is done");
        }
        return mine;
    }

    /** The packs the current points use; walks only points not walked before. */
    private Set<PackId> mark() throws RepositoryException {
        List<Point> current = repo.points();
        points = current.size();
        Set<String> ids = new HashSet<>();
        Set<PackId> used = new HashSet<>();
        for (Point p : current) {
            ids.add(p.id());
            Set<PackId> packs = marked.get(p.id());
            if (packs == null) {
                packs = walk(p);
                marked.put(p.id(), packs);
            }
            used.addAll(packs);
        }
        marked.keySet().retainAll(ids);
        return used;
    }

    /**
     * The packs a point's tree uses. A node already walked for another point (a shared subtree:
     * the same hash is the same content) is not read again; its packs are in that point's set,
     * and in {@link #sharedPacks}, which every later point's set includes.
     */
    private Set<PackId> walk(Point p) throws RepositoryException {
        Set<PackId> used = new HashSet<>();
        Ref root = ManifestDescriptor.rootRef(p);
        Geometry g = p.geometry();
        walk(g, g.levels() - 1, 0, root, used);
        return used;
    }

    /** Nodes walked so far in this run, and the packs under them. */
    private final Set<Sha256> walkedNodes = new HashSet<>();
    private final Set<PackId> sharedPacks = new HashSet<>();

    private void walk(Geometry g, int level, long nodeIndex, Ref ref, Set<PackId> used) throws RepositoryException {
        if (ref.isHole()) {
            return;
        }
        used.add(ref.pack());
        if (ref.kind() != NodeDescriptor.KIND_NODE || level < 0) {
            return;
        }
        if (!walkedNodes.add(ref.hash())) {
            used.addAll(sharedPacks); // walked before: its packs are among those of the points walked so far
            return;
        }
        Ref[] children = IndexTree.children(g, level, nodeIndex, ref, repo.reader());
        for (int e = 0; e < children.length; e++) {
            if (level == 0) {
                if (!children[e].isHole()) {
                    used.add(children[e].pack());
                }
            } else {
                walk(g, level - 1, nodeIndex * g.fanout() + e, children[e], used);
            }
        }
        sharedPacks.addAll(used);
    }

    /** Sweeps every condemned list that may be swept now (see the class comment). */
    private void sweep(Instant now, Map<String, ObjectStore.Entry> packs) throws RepositoryException {
        List<ObjectStore.Entry> lists = objects.list(RepositoryLayout.CONDEMNED_PREFIX);
        if (lists.isEmpty()) {
            return;
        }
        List<WriterSession.Marker> sessions = WriterSession.list(objects); // before the mark: see (c)
        Set<PackId> used = mark();
        Set<PackId> removable = new HashSet<>();
        Map<String, Set<PackId>> listed = new HashMap<>();
        for (ObjectStore.Entry list : lists) {
            Set<PackId> condemned;
            try {
                condemned = WriterIndex.parseCondemned(objects.get(list.key(), RepositoryLayout.MAX_CONDEMNED_BYTES));
            } catch (RepositoryException e) {
                if (e.code() == RepositoryException.Code.NOT_FOUND) {
                    continue;
                }
                throw e;
            }
            listed.put(list.key(), condemned);
            Instant c = list.lastModified();
            if (c.isAfter(now.minus(grace))) {
                continue; // (a)
            }
            boolean blocked = false;
            for (WriterSession.Marker s : sessions) {
                if (s.aliveAt(now) && !s.start().isAfter(c.plus(MARGIN))) {
                    blocked = true; // (b)
                    break;
                }
            }
            if (blocked) {
                continue;
            }
            for (PackId id : condemned) {
                if (!used.contains(id)) {
                    removable.add(id); // (c)
                }
            }
        }
        if (dryRun) {
            for (PackId id : removable) {
                ObjectStore.Entry e = packs.get(RepositoryLayout.packKey(id));
                if (e != null && !removed.contains(id + PackDescriptor.SUFFIX)) {
                    removed.add(id + PackDescriptor.SUFFIX);
                    removedBytes += e.sizeBytes();
                }
            }
            return;
        }
        if (!removable.isEmpty()) {
            rewriteIndexObjects(removable);
            for (PackId id : removable) {
                String key = RepositoryLayout.packKey(id);
                ObjectStore.Entry e = packs.get(key);
                objects.delete(key);
                if (e != null) {
                    removed.add(id + PackDescriptor.SUFFIX);
                    removedBytes += e.sizeBytes();
                }
            }
        }
        // lists lose the packs removed and those a point uses again (rescued); an empty list goes
        for (Map.Entry<String, Set<PackId>> l : listed.entrySet()) {
            Set<PackId> rest = new HashSet<>(l.getValue());
            rest.removeAll(removable);
            rest.removeAll(used);
            if (rest.isEmpty()) {
                objects.delete(l.getKey());
            } else if (rest.size() != l.getValue().size()) {
                objects.put(l.getKey(), WriterIndex.encodeCondemned(rest));
            }
        }
    }

    /** Writes each index object that names a pack about to go anew without it (a new name), then deletes the old one. */
    private void rewriteIndexObjects(Set<PackId> going) throws RepositoryException {
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.INDEX + "/")) {
            if (!e.key().endsWith(RepositoryLayout.INDEX_SUFFIX)) {
                continue;
            }
            List<ChunkStore.SealedPack> packs;
            try {
                packs = BlobIndexDescriptor.decode(objects.describe(e.key()), objects.get(e.key(), RepositoryLayout.MAX_INDEX_BYTES));
            } catch (RepositoryException x) {
                if (x.code() == RepositoryException.Code.IO) {
                    throw x;
                }
                continue; // damaged or gone: writers skip it anyway
            }
            List<ChunkStore.SealedPack> keep = packs.stream().filter(p -> !going.contains(p.id())).toList();
            if (keep.size() == packs.size()) {
                continue;
            }
            if (!keep.isEmpty()) {
                String name = e.key().substring(RepositoryLayout.INDEX.length() + 1,
                        e.key().length() - RepositoryLayout.INDEX_SUFFIX.length());
                int plus = name.indexOf('+');
                int g = name.indexOf(".g", Math.max(plus, 0)); // host names may hold ".g"; point ids do not
                String base = g < 0 ? name : name.substring(0, g);
                objects.put(RepositoryLayout.indexKey(base + ".g" + randomHex()), BlobIndexDescriptor.encode(keep));
            }
            objects.delete(e.key());
        }
    }
}
