package org.blksnap.backup;

import java.nio.ByteBuffer;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;

/**
 * One device's backup into one new point. Full when the device has no earlier point or the earlier
 * one cannot be the base (another CBT generation, a snapshot number not below this one, another size
 * or chunk size), else incremental: only the tracking blocks whose CBT value is above the base's
 * snapshot number are read, everything else is the base's index. Chunks are one tracking block each.
 *
 * <p>Reads go in runs of consecutive changed chunks of up to {@link #RUN_BYTES}, {@link #IN_FLIGHT}
 * at once on virtual threads through one {@link ImageReader} (one NBD connection, or the image itself
 * in the daemon's agent); each run's chunks are hashed, compressed and
 * stored by the thread that read them. Not thread-safe: {@link #run} once.
 */
final class DeviceBackup {
    /** Bytes read by one NBD request at most. */
    static final int RUN_BYTES = 1 << 20;
    /** Runs in flight at once (NBD requests outstanding plus the hashing and compression behind them). */
    static final int IN_FLIGHT = 8;
    private static final DateTimeFormatter ID_TIME = DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss").withZone(ZoneOffset.UTC);

    private final Repository repo;
    private final Repository.BackupSource src;
    private final Repository.CbtSource cbt;
    private final Repository.Progress progress;
    // nanoseconds summed over the reader threads (Repository.PointPhases)
    private final LongAdder nbdNanos = new LongAdder();
    private final LongAdder hashNanos = new LongAdder();
    private final LongAdder storeNanos = new LongAdder();

    DeviceBackup(Repository repo, Repository.BackupSource src, Repository.CbtSource cbt, Repository.Progress progress) {
        this.repo = repo;
        this.src = src;
        this.cbt = cbt;
        this.progress = progress;
    }

    /** Whether the point is incremental, why, and on which base. */
    record Plan(Point base, String reason) {
    }

    Plan plan(Geometry g) throws RepositoryException {
        Point last = repo.latest(src.device()).orElse(null);
        if (last == null) {
            return new Plan(null, "no earlier point of " + src.device());
        }
        if (!last.generation().equals(src.generation())) {
            return new Plan(null, "new CBT generation " + src.generation() + " (point " + last.id() + " has "
                    + last.generation() + "): the tracker was reset or removed, or the daemon restarted without its state");
        }
        if (last.snapNumber() >= src.snapNumber()) {
            return new Plan(null, "snapshot number " + src.snapNumber() + " is not above point " + last.id() + "'s "
                    + last.snapNumber());
        }
        if (last.sizeBytes() != g.sizeBytes()) {
            return new Plan(null, "device resized from " + last.sizeBytes() + " to " + g.sizeBytes() + " bytes");
        }
        if (last.chunkSizeBytes() != g.chunkSizeBytes() || last.fanout() != g.fanout()) {
            return new Plan(null, "chunk geometry changed (" + last.chunkSizeBytes() + "/" + last.fanout() + " -> "
                    + g.chunkSizeBytes() + "/" + g.fanout() + ")");
        }
        return new Plan(last, "changes since point " + last.id() + " (snapshot " + last.snapNumber() + ")");
    }

    /**
     * Marks as changed the chunks whose base ref names a copy verify recorded damaged: the block's
     * content is the base's (the CBT map says it did not change), so reading and storing it again
     * puts a good copy of the same name in the repository, which heals every point that refers to
     * the damaged one (readers find the good copy by name). Walks the whole base tree: only when
     * damaged copies are recorded. A base node that does not read ends the search (with a
     * warning), not the backup: the chunks found so far are read again.
     */
    private void rereadDamaged(Geometry g, Ref baseRoot, BitSet changed) throws RepositoryException {
        java.util.Set<Ref> damaged = repo.damagedCopies();
        try {
            walkForDamaged(g, baseRoot, damaged, changed);
        } catch (RepositoryException e) {
            if (e.code() != RepositoryException.Code.DAMAGED) {
                throw e;
            }
            repo.warn("backup of " + src.device() + ": the base point's tree does not read whole (" + e.getMessage()
                    + "); only the damaged chunks found before are read again");
        }
    }

    private void walkForDamaged(Geometry g, Ref baseRoot, java.util.Set<Ref> damaged, BitSet changed)
            throws RepositoryException {
        IndexTree.walk(g, baseRoot, repo.reader().forHost(repo.host()), new IndexTree.Visitor() {
            @Override
            public void hole(long firstChunk, long chunkCount) {
            }

            @Override
            public void chunk(int chunkIndex, Ref ref) {
                if (damaged.contains(DamagedCopies.normal(ref))) {
                    changed.set(chunkIndex);
                }
            }
        });
    }

    Point run() throws RepositoryException {
        long startNanos = System.nanoTime();
        Instant start = Instant.now();
        Geometry g = new Geometry(src.sizeBytes(), src.blockSizeBytes(), NodeDescriptor.DEFAULT_FANOUT);
        Plan plan = plan(g);
        BitSet changed = new BitSet(g.chunkCount());
        long t0 = System.nanoTime();
        if (plan.base() == null) {
            changed.set(0, g.chunkCount());
        } else {
            byte[] map;
            try {
                map = cbt.readMap();
            } catch (RepositoryException e) {
                throw e;
            } catch (Exception e) {
                throw new RepositoryException(RepositoryException.Code.NBD, "cannot read the CBT map of " + src.device()
                        + ": " + e.getMessage(), e);
            }
            if (map.length != g.chunkCount()) {
                throw new RepositoryException(RepositoryException.Code.NBD, "the CBT map of " + src.device() + " has "
                        + map.length + " blocks; " + g.chunkCount() + " expected for " + g.sizeBytes() + " bytes");
            }
            for (int i = 0; i < map.length; i++) {
                if ((map[i] & 0xff) > plan.base().snapNumber()) {
                    changed.set(i);
                }
            }
        }
        ChunkStore store = repo.store();
        if (plan.base() != null && !repo.damagedCopies().isEmpty()) {
            rereadDamaged(g, ManifestDescriptor.rootRef(plan.base()), changed);
        }
        long newBytesBefore = store.newBytes();
        Ref[] newRefs = new Ref[g.chunkCount()];
        AtomicLong bytesRead = new AtomicLong();
        long totalBytes = 0;
        for (int i = changed.nextSetBit(0); i >= 0; i = changed.nextSetBit(i + 1)) {
            totalBytes += g.chunkLengthBytes(i);
        }
        long t1 = System.nanoTime();
        try (ImageReader client = src.opener().open(src.image(), src.uri())) {
            if (client.sizeBytes() != g.sizeBytes()) {
                throw new RepositoryException(RepositoryException.Code.NBD, src.uri() + " is " + client.sizeBytes()
                        + " bytes; the daemon reported " + g.sizeBytes() + " for " + src.device());
            }
            readAndStore(g, changed, newRefs, client, store, bytesRead, totalBytes);
        }
        long t2 = System.nanoTime();
        Ref root = IndexTree.build(g, changed, newRefs, plan.base() == null ? null : ManifestDescriptor.rootRef(plan.base()),
                store, repo.reader().forHost(repo.host()));
        long t3 = System.nanoTime();
        store.seal();
        long t4 = System.nanoTime();
        double seconds = (System.nanoTime() - startNanos) / 1e9;
        Point p = new Point(newId(start), src.device(), start.toString(), plan.base() == null ? "full" : "incremental",
                plan.reason(), src.generation(), src.snapNumber(), g.sizeBytes(), g.chunkSizeBytes(), g.fanout(),
                ManifestDescriptor.rootHex(root), bytesRead.get(), store.newBytes() - newBytesBefore, seconds, repo.host());
        repo.commit(p);
        long t5 = System.nanoTime();
        progress.finished(new Repository.PointPhases((t1 - t0) / 1e9, (t2 - t1) / 1e9, nbdNanos.sum() / 1e9,
                hashNanos.sum() / 1e9, storeNanos.sum() / 1e9, (t3 - t2) / 1e9, (t4 - t3) / 1e9, (t5 - t4) / 1e9));
        return p;
    }

    private void readAndStore(Geometry g, BitSet changed, Ref[] newRefs, ImageReader client, ChunkStore store,
                              AtomicLong bytesRead, long totalBytes) throws RepositoryException {
        AtomicReference<RepositoryException> failure = new AtomicReference<>();
        Semaphore inFlight = new Semaphore(IN_FLIGHT);
        byte[] zeros = new byte[g.chunkSizeBytes()];
        int runChunks = Math.max(1, RUN_BYTES / g.chunkSizeBytes());
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            int i = changed.nextSetBit(0);
            while (i >= 0 && failure.get() == null) {
                int first = i;
                int end = first + 1;
                while (end - first < runChunks && end < g.chunkCount() && changed.get(end)) {
                    end++;
                }
                int last = end;
                try {
                    inFlight.acquire();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    failure.compareAndSet(null, new RepositoryException(RepositoryException.Code.IO, "backup of "
                            + src.device() + " interrupted", e));
                    break;
                }
                pool.execute(() -> {
                    try {
                        if (failure.get() == null) {
                            readRun(g, first, last, newRefs, client, store, zeros, bytesRead, totalBytes);
                        }
                    } catch (RepositoryException e) {
                        failure.compareAndSet(null, e);
                    } catch (RuntimeException e) {
                        failure.compareAndSet(null, new RepositoryException(RepositoryException.Code.IO, "backup of "
                                + src.device() + " failed at chunk " + first + ": " + e, e));
                    } finally {
                        inFlight.release();
                    }
                });
                i = changed.nextSetBit(end);
            }
        }
        if (failure.get() != null) {
            throw failure.get();
        }
    }

    private void readRun(Geometry g, int first, int end, Ref[] newRefs, ImageReader client, ChunkStore store, byte[] zeros,
                         AtomicLong bytesRead, long totalBytes) throws RepositoryException {
        long offset = g.chunkOffsetBytes(first);
        int length = (int) (g.chunkOffsetBytes(end - 1) + g.chunkLengthBytes(end - 1) - offset);
        ByteBuffer buf = ByteBuffer.allocate(length);
        long t0 = System.nanoTime();
        for (int done = 0; done < length; done += NbdClientDescriptor.MAX_REQUEST_BYTES) {
            int n = Math.min(NbdClientDescriptor.MAX_REQUEST_BYTES, length - done);
            client.read(offset + done, buf.slice(done, n));
        }
        long t1 = System.nanoTime();
        nbdNanos.add(t1 - t0);
        byte[] data = buf.array();
        List<ChunkStore.Blob> blobs = new ArrayList<>();
        List<Integer> chunks = new ArrayList<>();
        for (int c = first; c < end; c++) {
            int at = (int) (g.chunkOffsetBytes(c) - offset);
            int len = g.chunkLengthBytes(c);
            if (Arrays.equals(data, at, at + len, zeros, 0, len)) {
                newRefs[c] = Ref.HOLE;
            } else {
                // a run of one chunk (an incremental's scattered changes) is its own buffer: no copy
                byte[] chunk = at == 0 && len == data.length ? data : Arrays.copyOfRange(data, at, at + len);
                blobs.add(new ChunkStore.Blob(NodeDescriptor.KIND_CHUNK, store.name(chunk), chunk));
                chunks.add(c);
            }
        }
        long t2 = System.nanoTime();
        hashNanos.add(t2 - t1);
        Ref[] refs = store.putAll(blobs);
        storeNanos.add(System.nanoTime() - t2);
        for (int i = 0; i < refs.length; i++) {
            newRefs[chunks.get(i)] = refs[i];
        }
        progress.update(bytesRead.addAndGet(length), totalBytes);
    }

    private static String newId(Instant start) {
        return ID_TIME.format(start) + "-" + HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextInt(1 << 24)).substring(2);
    }
}
