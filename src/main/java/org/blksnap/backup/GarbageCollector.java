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
 * Removes what no point needs, safely while other hosts back up into the same repository, with
 * no lock between writers and gc: a two-phase mark with the store's own timestamps.
 *
 * <ol>
 * <li><b>Condemn.</b> gc marks the live blobs (every blob a point's tree names, by name) and plans
 *     each pack ({@link RepackPlan}): a pack holding no kept copy of a live blob is unused; a pack
 *     whose kept copies are less than the repack threshold of its blob bytes has them copied, as
 *     they are stored (no recompression; a sealed payload stays sealed: its associated data is its
 *     header, which names the blob, not its place), into new packs written as a writer writes them,
 *     durable, with an index object of their own; only then are both kinds written to a new
 *     {@code gc/condemned-<id>} list. From then on a writer that begins (its session's start marker
 *     is newer than the list) leaves those packs out of what it deduplicates against.</li>
 * <li><b>Sweep.</b> A pack of a condemned list written at time C is removed when (a) C is older
 *     than the grace period, (b) no live writer session began before C + {@link #MARGIN} (such a
 *     writer may hold a ref to the pack from before the list; a session is live until its markers
 *     are {@link WriterSession#STALE}), and (c) a fresh mark, taken after the session listing, finds
 *     every live blob it holds also in a pack that stays, an index object lists, and no verify
 *     recorded damaged (readers find that copy by name, {@link BlobLocator}); otherwise the pack is
 *     taken off its list (rescued). Index objects naming removed packs are rewritten without them
 *     before the packs go.</li>
 * </ol>
 * Moving a blob a ref names (repacking, or dropping a duplicate or damaged copy) makes the
 * repository format version 4 first ({@link Repository#allowRelocation}); with a repack threshold
 * of 0 a version 2 or 3 repository stays as it is, and only packs no ref names go.
 * One gc run does both phases: it sweeps older lists, condemns, and sweeps its own list at once
 * when nothing blocks it (grace zero, no older writer live). A gc killed after writing new packs
 * and before its list leaves duplicate copies, which the next gc condemns (it keeps the copies in
 * packs that stay). Two gc runs at once: each writes a {@code gc/lock-<id>} and lists the others;
 * one that sees another live lock removes its own and stops with {@code LOCKED}.
 * Memory: a {@link Ref} per live blob and per blob copy in the repository.
 * Not thread-safe: {@link #run} once.
 */
final class GarbageCollector {
    /** Unfinished uploads (tmp files, incomplete multipart uploads) older than this are dropped by gc. */
    static final Duration INCOMPLETE_AGE = Duration.ofDays(1);
    /** Resolution of the store's timestamps (S3 gives seconds), with room. */
    static final Duration MARGIN = Duration.ofSeconds(2);
    /** The default repack threshold: a pack whose live blobs are less than half its blob bytes is repacked. */
    static final double DEFAULT_REPACK_BELOW = 0.5;
    /** Blobs one index object of gc's lists at most (44 bytes each: well under {@link RepositoryLayout#MAX_INDEX_BYTES}). */
    static final int MAX_INDEX_ENTRIES = 2_000_000;
    private static final SecureRandom RANDOM = new SecureRandom();

    private final Repository repo;
    private final ObjectStore objects;
    private final Duration grace;
    private final boolean dryRun;
    private final double repackBelow;
    private final Consumer<String> warn;
    private final PackInventory inventory;
    private final String runId = randomHex();
    private final String lockKey = RepositoryLayout.GC_LOCK_PREFIX + randomHex();
    /** When our lock was last written ({@link System#nanoTime}): a long mark or repack rewrites it. */
    private long lockWrittenNanos;
    /** Live blobs by name (one ref each), from every point walked in this run: a superset is safe. */
    private final Map<Sha256, Ref> live = new HashMap<>();
    /** Packs the walked trees' refs name. */
    private final Set<PackId> refPacks = new HashSet<>();
    private final Set<String> walkedPoints = new HashSet<>();
    private final Set<Sha256> walkedNodes = new HashSet<>();
    /** The reader of the point being marked ({@link BlobReader#forHost}). */
    private BlobReader walking;
    private boolean relocatable;
    private int points;
    private final List<String> removed = new ArrayList<>();
    private long removedBytes;
    private final List<String> repacked = new ArrayList<>();
    private long movedBytes;
    private int packsWritten;

    /**
     * @param repackBelow a pack whose live blobs are less than this fraction of its blob bytes is
     *                    repacked: 0 never (a version 2 or 3 repository then stays readable by older
     *                    blksnap), 1 any pack with a dead byte
     */
    GarbageCollector(Repository repo, Duration grace, boolean dryRun, double repackBelow, Consumer<String> warn) {
        if (!(repackBelow >= 0 && repackBelow <= 1)) {
            throw new IllegalArgumentException("repackBelow (" + repackBelow + ") must be within 0..1");
        }
        this.repo = repo;
        this.objects = repo.objects();
        this.grace = grace;
        this.dryRun = dryRun;
        this.repackBelow = repackBelow;
        this.warn = warn;
        this.inventory = new PackInventory(objects, warn);
    }

    Repository.GcResult run() throws RepositoryException {
        try {
            Instant now = lockTime();
            relocatable = repo.formatVersion() == RepositoryLayout.VERSION_RELOCATABLE;
            // a live writer's pack may be open for a while (a slow incremental): only day-old leftovers go
            objects.dropIncomplete(null, now.minus(INCOMPLETE_AGE));
            sweep(now);
            mark();
            PackInventory.Snapshot inv = inventory.take();
            Set<PackId> alreadyCondemned = WriterIndex.condemned(objects);
            RepackPlan.Plan plan = RepackPlan.plan(live, refPacks, inv, alreadyCondemned, DamagedCopies.load(objects),
                    repackBelow, relocatable || repackBelow > 0);
            Set<PackId> condemn = new HashSet<>(plan.unused());
            if (dryRun) {
                for (Map.Entry<PackId, List<Ref>> r : plan.repack().entrySet()) {
                    repacked.add(r.getKey() + PackDescriptor.SUFFIX);
                }
                movedBytes = plan.bytesToMove();
                condemn.addAll(plan.repack().keySet());
                if (!condemn.isEmpty() && grace.isZero()
                        && WriterSession.list(objects).stream().noneMatch(m -> m.aliveAt(now))) {
                    for (PackId id : condemn) { // what this run would condemn and, with nothing to wait for, remove at once
                        removed.add(id + PackDescriptor.SUFFIX);
                        removedBytes += inv.packs().get(id).sizeBytes();
                    }
                }
            } else {
                if (plan.relocates() && !relocatable) {
                    relocatable = true;
                    repo.allowRelocation();
                }
                condemn.addAll(repack(plan, inv));
                if (!condemn.isEmpty()) {
                    objects.put(RepositoryLayout.CONDEMNED_PREFIX + randomHex(), WriterIndex.encodeCondemned(condemn));
                    sweep(lockTime());
                }
            }
            Set<PackId> waitingIds = WriterIndex.condemned(objects);
            if (dryRun) {
                waitingIds.addAll(condemn);
            }
            Set<String> gone = new HashSet<>(removed);
            int waiting = 0;
            int kept = 0;
            for (ObjectStore.Entry e : objects.list(RepositoryLayout.PACKS + "/")) {
                if (!e.key().endsWith(PackDescriptor.SUFFIX) || gone.contains(e.key().substring(e.key().lastIndexOf('/') + 1))) {
                    continue;
                }
                if (waitingIds.contains(PackScan.packId(e.key()))) {
                    waiting++;
                } else {
                    kept++;
                }
            }
            return new Repository.GcResult(points, kept, waiting, removed.stream().sorted().toList(), removedBytes, dryRun,
                    repacked.stream().sorted().toList(), movedBytes, packsWritten);
        } finally {
            objects.delete(lockKey);
        }
    }

    /**
     * Copies the kept blobs of the packs to repack into new packs (one set of packs and one index
     * object per origin of the old packs: {@code <host>+gc-<id>}, so a writer that loads only its
     * host's index objects still finds them), durable before this returns; each blob's stored bytes
     * are checked (decoded and re-hashed) before they are copied. A pack with a blob that does not
     * read is kept whole (named in a warning): it may hold the only copy.
     *
     * @return the packs whose blobs are all copied: they may be condemned
     */
    private Set<PackId> repack(RepackPlan.Plan plan, PackInventory.Snapshot inv) throws RepositoryException {
        Map<String, List<PackId>> byOrigin = new java.util.TreeMap<>();
        for (PackId id : plan.repack().keySet()) {
            byOrigin.computeIfAbsent(inv.origin().getOrDefault(id, ""), k -> new ArrayList<>()).add(id);
        }
        Set<PackId> done = new HashSet<>();
        for (Map.Entry<String, List<PackId>> group : byOrigin.entrySet()) {
            List<PackId> ids = group.getValue();
            ids.sort(java.util.Comparator.comparing(PackId::toString));
            List<PackId> copied = new ArrayList<>();
            long moved = 0;
            List<ChunkStore.SealedPack> sealed;
            try (ChunkStore out = new ChunkStore(objects, "gc-" + runId, Map.of(), PackDescriptor.TARGET_PACK_BYTES, repo.key())) {
                for (PackId id : ids) {
                    List<Ref> blobs = plan.repack().get(id);
                    List<java.nio.ByteBuffer> stored = new ArrayList<>(blobs.size());
                    try {
                        for (List<Ref> run : runs(blobs)) {
                            stored.addAll(repo.reader().readStoredExactly(run));
                        }
                    } catch (RepositoryException e) {
                        if (e.code() != RepositoryException.Code.DAMAGED) {
                            throw e;
                        }
                        warn.accept("gc: pack " + id + " is kept whole: " + e.getMessage() + " (run blksnap verify)");
                        continue;
                    }
                    touchLock();
                    for (int i = 0; i < blobs.size(); i++) {
                        out.putStored(blobs.get(i).kind(), blobs.get(i).hash(), stored.get(i));
                        moved += blobs.get(i).lengthBytes();
                    }
                    copied.add(id);
                }
                out.seal();
                sealed = out.drainSealed();
            }
            int part = 0;
            List<ChunkStore.SealedPack> batch = new ArrayList<>();
            long entries = 0;
            for (int i = 0; i < sealed.size(); i++) {
                batch.add(sealed.get(i));
                entries += sealed.get(i).entries().size();
                if (i == sealed.size() - 1 || entries + sealed.get(i + 1).entries().size() > MAX_INDEX_ENTRIES) {
                    objects.put(RepositoryLayout.indexKey(group.getKey() + "gc-" + runId + (part == 0 ? "" : "-" + part)),
                            BlobIndexDescriptor.encode(batch));
                    part++;
                    batch.clear();
                    entries = 0;
                }
            }
            done.addAll(copied);
            for (PackId id : copied) {
                repacked.add(id + PackDescriptor.SUFFIX);
            }
            movedBytes += moved;
            packsWritten += sealed.size();
        }
        return done;
    }

    /** Blobs of one pack, in offset order, cut into runs of adjacent blobs of at most {@link Restore#RUN_BYTES}. */
    static List<List<Ref>> runs(List<Ref> blobs) {
        List<List<Ref>> runs = new ArrayList<>();
        List<Ref> run = new ArrayList<>();
        long runBytes = 0;
        for (Ref b : blobs) {
            if (!run.isEmpty() && (!BlobReader.adjacent(run.getLast(), b) || runBytes + b.lengthBytes() > Restore.RUN_BYTES)) {
                runs.add(run);
                run = new ArrayList<>();
                runBytes = 0;
            }
            run.add(b);
            runBytes += b.lengthBytes();
        }
        if (!run.isEmpty()) {
            runs.add(run);
        }
        return runs;
    }

    private static String randomHex() {
        byte[] b = new byte[8];
        RANDOM.nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    /**
     * Rewrites our lock when it was written a {@link WriterSession#HEARTBEAT} ago or more, so that a
     * mark or repack longer than {@link WriterSession#STALE} does not look like a dead gc to another.
     */
    private void touchLock() throws RepositoryException {
        if (System.nanoTime() - lockWrittenNanos >= WriterSession.HEARTBEAT.toNanos()) {
            lockTime();
        }
    }

    /**
     * Rewrites our lock (the store's clock gives "now") and checks no other gc runs.
     *
     * @throws RepositoryException LOCKED another gc's lock is live
     */
    private Instant lockTime() throws RepositoryException {
        lockWrittenNanos = System.nanoTime();
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

    /**
     * Adds the blobs of the points not walked yet in this run to {@link #live} and their packs to
     * {@link #refPacks}. A point pruned since an earlier mark of this run stays counted: a superset
     * of the live blobs only keeps more.
     */
    private void mark() throws RepositoryException {
        List<Point> current = repo.points();
        points = current.size();
        for (Point p : current) {
            if (walkedPoints.add(p.id())) {
                Geometry g = p.geometry();
                walking = repo.reader().forHost(p.host());
                walk(g, g.levels() - 1, 0, ManifestDescriptor.rootRef(p));
            }
        }
    }

    /** Marks {@code ref} and, for a node not walked before in this run (a shared subtree is one blob), what it names. */
    private void walk(Geometry g, int level, long nodeIndex, Ref ref) throws RepositoryException {
        if (ref.isHole()) {
            return;
        }
        live.putIfAbsent(ref.hash(), ref);
        refPacks.add(ref.pack());
        if (ref.kind() != NodeDescriptor.KIND_NODE || level < 0 || !walkedNodes.add(ref.hash())) {
            return;
        }
        touchLock();
        Ref[] children = IndexTree.children(g, level, nodeIndex, ref, walking);
        for (int e = 0; e < children.length; e++) {
            if (level == 0) {
                if (!children[e].isHole()) {
                    live.putIfAbsent(children[e].hash(), children[e]);
                    refPacks.add(children[e].pack());
                }
            } else {
                walk(g, level - 1, nodeIndex * g.fanout() + e, children[e]);
            }
        }
    }

    /** Sweeps every condemned list that may be swept now (see the class comment). */
    private void sweep(Instant now) throws RepositoryException {
        List<ObjectStore.Entry> lists = objects.list(RepositoryLayout.CONDEMNED_PREFIX);
        if (lists.isEmpty()) {
            return;
        }
        List<WriterSession.Marker> sessions = WriterSession.list(objects); // before the mark: see (c)
        mark();
        PackInventory.Snapshot inv = inventory.take();
        Set<Ref> damaged = DamagedCopies.load(objects);
        Set<PackId> removable = new java.util.TreeSet<>(java.util.Comparator.comparing(PackId::toString));
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
            if (!blocked) {
                removable.addAll(condemned);
            }
        }
        Set<PackId> rescued = rescue(removable, inv, damaged); // (c)
        removable.retainAll(inv.packs().keySet());
        if (dryRun) {
            for (PackId id : removable) {
                if (!removed.contains(id + PackDescriptor.SUFFIX)) {
                    removed.add(id + PackDescriptor.SUFFIX);
                    removedBytes += inv.packs().get(id).sizeBytes();
                }
            }
            return;
        }
        if (!removable.isEmpty()) {
            boolean relocates = false;
            for (PackId id : removable) {
                relocates |= refPacks.contains(id) || RepackPlan.holdsLive(inv.entries().get(id), live);
            }
            if (relocates && !relocatable) {
                relocatable = true;
                repo.allowRelocation();
            }
            rewriteIndexObjects(removable);
            for (PackId id : removable) {
                objects.delete(RepositoryLayout.packKey(id));
                removed.add(id + PackDescriptor.SUFFIX);
                removedBytes += inv.packs().get(id).sizeBytes();
            }
            forgetDamaged(removable);
        }
        // lists lose the packs removed, those rescued, and those that are gone; an empty list goes
        for (Map.Entry<String, Set<PackId>> l : listed.entrySet()) {
            Set<PackId> rest = new HashSet<>(l.getValue());
            rest.removeAll(removable);
            rest.removeAll(rescued);
            rest.retainAll(inv.packs().keySet());
            if (rest.isEmpty()) {
                objects.delete(l.getKey());
            } else if (rest.size() != l.getValue().size()) {
                objects.put(l.getKey(), WriterIndex.encodeCondemned(rest));
            }
        }
    }

    /**
     * Rule (c): takes out of {@code removable} (and returns) each pack that holds a live blob of
     * which no good copy is left in an indexed pack that stays, or that a ref names while the
     * repository is not of version 4, or whose blobs are unknown and a ref names it. Packs are
     * looked at in a fixed order, so of two condemned packs holding the only copies of a blob the
     * first stays and the second goes.
     */
    private Set<PackId> rescue(Set<PackId> removable, PackInventory.Snapshot inv, Set<Ref> damaged) {
        Set<PackId> rescued = new HashSet<>();
        for (PackId id : List.copyOf(removable)) {
            if (!inv.packs().containsKey(id)) {
                continue;
            }
            List<Ref> entries = inv.entries().get(id);
            boolean needed = refPacks.contains(id) && (entries == null || !relocatable && repackBelow == 0);
            for (Ref r : entries == null || needed ? List.<Ref>of() : entries) {
                Ref l = live.get(r.hash());
                if (l != null && l.kind() == r.kind() && !availableElsewhere(r, removable, inv, damaged)) {
                    needed = true;
                    break;
                }
            }
            if (needed) {
                removable.remove(id);
                rescued.add(id);
            }
        }
        return rescued;
    }

    private static boolean availableElsewhere(Ref copy, Set<PackId> removable, PackInventory.Snapshot inv, Set<Ref> damaged) {
        for (Ref c : inv.copies().getOrDefault(copy.hash(), List.of())) {
            if (c.kind() == copy.kind() && !removable.contains(c.pack()) && inv.indexed().contains(c.pack())
                    && !damaged.contains(DamagedCopies.normal(c))) {
                return true;
            }
        }
        return false;
    }

    /** Drops the damaged copies recorded in packs that are gone now. */
    private void forgetDamaged(Set<PackId> gone) throws RepositoryException {
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.DAMAGED + "/")) {
            Set<Ref> recorded = DamagedCopies.loadOne(objects, e.key());
            Set<Ref> copies = new java.util.LinkedHashSet<>();
            for (Ref r : recorded) {
                if (!gone.contains(r.pack())) {
                    copies.add(r);
                }
            }
            if (copies.size() != recorded.size()) {
                DamagedCopies.write(objects, e.key(), copies);
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
