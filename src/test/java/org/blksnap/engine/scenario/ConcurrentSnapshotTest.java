package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;
import static org.blksnap.engine.scenario.Io.KiB;
import static org.blksnap.engine.scenario.Io.MiB;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;
import java.util.UUID;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.stream.IntStream;
import java.util.zip.CRC32C;
import org.awaitility.core.ConditionFactory;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;
import org.blksnap.engine.Params;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Status;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Snapshots taken, read and destroyed while many virtual threads write to the originals.
 *
 * <p>Every 4 KiB block written carries a stamp (device, block, seq, CRC). Each block belongs to one
 * writer, which writes the same seq to the block on every device in device order and only then
 * records it as acknowledged. The take hooks record, per block, the last seq acknowledged before the
 * barrier closed ({@code lo}) and the last seq started before it opened again ({@code hi}). Forbidden
 * outcomes: an image block outside {@code [lo, hi]} (a write lost from the snapshot, or one made after
 * it), an image block that changes while the snapshot lives (a post-take write leaking in), a cut
 * that is not one point in time across devices (a later device showing a newer seq than an earlier
 * one), a torn or misplaced block, a corrupted event, a deadlock (every test is bounded).
 */
class ConcurrentSnapshotTest {
    private static final int BLOCK = 4096;
    private static final long DEVICE_BYTES = 2 * MiB;
    private static final int BLOCKS = (int) (DEVICE_BYTES / BLOCK);
    private static final int DEVICES = 3;
    private static final int WRITERS = 8;
    private static final int ROUNDS = 10;
    private static final long MAGIC = 0x5354414d50534e42L;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private Blksnap engine;

    @AfterEach
    void down() {
        if (engine != null) {
            engine.close();
        }
    }

    private void engine(int chunkShift, int devices, long deviceBytes) throws Exception {
        Params p = new Params();
        p.set("chunk_minimum_shift", chunkShift);
        p.set("tracking_block_minimum_shift", 12);
        p.set("diff_storage_minimum", 1024);
        engine = BlksnapModule.init(p);
        for (int i = 0; i < devices; i++) {
            engine.addDevice("d" + i, BlockDevices.open(dir.resolve("d" + i + ".img"), deviceBytes, false));
        }
    }

    // ---- stamps ----------------------------------------------------------------------------

    private static ByteBuffer stamp(int device, int block, long seq) {
        ByteBuffer b = ByteBuffer.allocate(BLOCK);
        b.putLong(MAGIC).putInt(device).putInt(block).putLong(seq);
        long x = seq * 0x9E3779B97F4A7C15L + block;
        while (b.remaining() > 8) {
            x ^= x << 13;
            x ^= x >>> 7;
            x ^= x << 17;
            b.putLong(x);
        }
        CRC32C crc = new CRC32C();
        crc.update(b.array(), 0, BLOCK - 8);
        b.putLong(crc.getValue());
        return b.flip();
    }

    /** The seq of a stamped block, after checking it belongs there; -1 with a reason in {@code problems} otherwise. */
    private static long seqOf(ByteBuffer all, int block, int device, List<String> problems, String what) {
        ByteBuffer b = all.duplicate().position(block * BLOCK).limit((block + 1) * BLOCK).slice();
        CRC32C crc = new CRC32C();
        crc.update(b.duplicate().limit(BLOCK - 8));
        if (b.getLong(0) != MAGIC || b.getLong(BLOCK - 8) != crc.getValue()) {
            problems.add(what + " block " + block + ": torn or not a stamp");
            return -1;
        }
        if (b.getInt(8) != device || b.getInt(12) != block) {
            problems.add(what + " block " + block + ": stamp of device " + b.getInt(8) + " block " + b.getInt(12));
            return -1;
        }
        return b.getLong(16);
    }

    /** Waits for what the writer threads make true within milliseconds: polls every millisecond, at most 30 s. */
    private static ConditionFactory soon(String what) {
        return await(what).atMost(Duration.ofSeconds(30)).pollDelay(Duration.ZERO).pollInterval(Duration.ofMillis(1));
    }

    private static long[] copy(AtomicLongArray a) {
        long[] out = new long[a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i);
        }
        return out;
    }

    @Test
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void imagesShowOneCutAcrossDevicesAndNeverAWriteMadeAfterIt() throws Exception {
        engine(14, DEVICES, DEVICE_BYTES);
        List<BlockDevice> origs = new ArrayList<>();
        for (int d = 0; d < DEVICES; d++) {
            origs.add(engine.device("d" + d));
            for (int b = 0; b < BLOCKS; b++) {
                origs.get(d).write(stamp(d, b, 0), (long) b * BLOCK);
            }
        }
        AtomicLong seq = new AtomicLong();
        AtomicLongArray started = new AtomicLongArray(BLOCKS);
        AtomicLongArray acked = new AtomicLongArray(BLOCKS);
        AtomicBoolean stop = new AtomicBoolean();
        ConcurrentLinkedQueue<Throwable> writerErrors = new ConcurrentLinkedQueue<>();
        List<Thread> writers = new ArrayList<>();
        for (int w = 0; w < WRITERS; w++) {
            int me = w;
            writers.add(Thread.ofVirtual().name("writer-" + w).start(() -> {
                SplittableRandom r = new SplittableRandom(me);
                try {
                    while (!stop.get()) {
                        int block = me + WRITERS * r.nextInt(BLOCKS / WRITERS);
                        long s = seq.incrementAndGet();
                        started.set(block, s);
                        for (int d = 0; d < DEVICES; d++) {
                            origs.get(d).write(stamp(d, block, s), (long) block * BLOCK);
                        }
                        acked.set(block, s);
                        Io.pauseBetweenRequests();
                    }
                } catch (Throwable t) {
                    writerErrors.add(t);
                }
            }));
        }
        List<String> names = List.of("d0", "d1", "d2");
        List<String> problems = new ArrayList<>();
        long writesAtStart = seq.get();
        for (int round = 0; round < ROUNDS && problems.isEmpty(); round++) {
            UUID id = engine.snapshotCreate(names);
            engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff" + round), 8 * MiB));
            long[][] window = new long[2][];
            engine.snapshotTake(id, new TakeHooks() {
                @Override
                public void beforeBarrier() {
                    window[0] = copy(acked);
                }

                @Override
                public void afterBarrier() {
                    window[1] = copy(started);
                }
            });
            List<BlockDevice> images = engine.snapshotCollectImages(id).stream().map(i -> engine.image(i.image())).toList();
            long[][] first = readImages(images, problems, "round " + round + " first read");
            // Each writer starts a write only after its previous one was acknowledged, so 2 x WRITERS new seqs
            // mean at least WRITERS writes made after the first read, which the second read must not show.
            long mark = seq.get();
            soon("writes after the first read").until(() -> seq.get() >= mark + 2L * WRITERS);
            long[][] second = readImages(images, problems, "round " + round + " second read");
            for (int b = 0; b < BLOCKS && problems.size() < 30; b++) {
                for (int d = 0; d < DEVICES; d++) {
                    long s = first[d][b];
                    if (s < window[0][b] || s > window[1][b]) {
                        problems.add("round " + round + " d" + d + " block " + b + ": seq " + s + " outside [" + window[0][b]
                                + ", " + window[1][b] + "]");
                    }
                    if (second[d][b] != s) {
                        problems.add("round " + round + " d" + d + " block " + b + ": image changed from seq " + s
                                + " to " + second[d][b]);
                    }
                    if (d > 0 && first[d][b] > first[d - 1][b]) {
                        problems.add("round " + round + " block " + b + ": d" + d + " shows seq " + first[d][b]
                                + ", newer than d" + (d - 1) + " (" + first[d - 1][b] + ")");
                    }
                }
            }
            assertThat(Io.drainEvents(engine, id)).noneMatch(e -> e instanceof SnapshotEvent.Corrupted);
            engine.snapshotDestroy(id);
        }
        stop.set(true);
        for (Thread t : writers) {
            assertThat(t.join(java.time.Duration.ofSeconds(10))).as(t.getName() + " finished").isTrue();
        }
        assertThat(writerErrors).isEmpty();
        assertThat(problems).isEmpty();
        assertThat(seq.get() - writesAtStart).as("writers made progress during the rounds").isGreaterThan(ROUNDS);
    }

    private static long[][] readImages(List<BlockDevice> images, List<String> problems, String what) throws Exception {
        long[][] out = new long[images.size()][BLOCKS];
        for (int d = 0; d < images.size(); d++) {
            ByteBuffer all = Io.readBuffer(images.get(d), 0, (int) DEVICE_BYTES);
            for (int b = 0; b < BLOCKS; b++) {
                out[d][b] = seqOf(all, b, d, problems, what + " d" + d);
            }
        }
        return out;
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void concurrentWritesToOneChunkCopyItExactlyOnce() throws Exception {
        int chunk = 64 * (int) KiB;
        int chunks = 32;
        int threads = chunk / BLOCK;
        engine(16, 1, (long) chunks * chunk);
        BlockDevice orig = engine.device("d0");
        for (int b = 0; b < chunks * threads; b++) {
            orig.write(stamp(0, b, 0), (long) b * BLOCK);
        }
        UUID id = engine.snapshotCreate(List.of("d0"));
        engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff"), 4L * chunks * chunk));
        engine.snapshotTake(id, TakeHooks.NONE);
        BlockDevice img = engine.image(engine.snapshotCollectImages(id).get(0).image());

        CountDownLatch go = new CountDownLatch(1);
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            int slot = t;
            ts.add(Thread.ofVirtual().start(() -> {
                List<Integer> order = new ArrayList<>();
                for (int c = 0; c < chunks; c++) {
                    order.add(c);
                }
                Collections.shuffle(order, new java.util.Random(slot));
                try {
                    go.await();
                    for (int c : order) {
                        int block = c * threads + slot;
                        orig.write(stamp(0, block, 1), (long) block * BLOCK);
                    }
                } catch (Throwable e) {
                    errors.add(e);
                }
            }));
        }
        go.countDown();
        for (Thread t : ts) {
            assertThat(t.join(java.time.Duration.ofSeconds(30))).isTrue();
        }
        assertThat(errors).isEmpty();

        Status.SnapshotStatus st = engine.status().snapshots().get(0);
        assertThat(st.chunksCopied()).isEqualTo(chunks);
        assertThat(st.usedSectors()).isEqualTo((long) chunks * chunk / 512);
        List<String> problems = new ArrayList<>();
        ByteBuffer image = Io.readBuffer(img, 0, chunks * chunk);
        ByteBuffer now = Io.readBuffer(orig, 0, chunks * chunk);
        for (int b = 0; b < chunks * threads; b++) {
            assertThat(seqOf(image, b, 0, problems, "image")).as("image block " + b).isEqualTo(0);
            assertThat(seqOf(now, b, 0, problems, "original")).as("original block " + b).isEqualTo(1);
        }
        assertThat(problems).isEmpty();
    }

    /**
     * Upstream 7000-destroy: destroy while the originals and the images are busy. Original writes
     * never fail; image I/O works while the snapshot lives, fails with ENODEV once the destroy has
     * returned, and either in the loop it overlapped; nothing hangs.
     */
    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void destroyUnderImageAndOriginalIoNeitherHangsNorFailsOriginalWrites() throws Exception {
        engine(14, 2, DEVICE_BYTES);
        ConcurrentLinkedQueue<Throwable> unexpected = new ConcurrentLinkedQueue<>();
        int threads = 6;
        for (int round = 0; round < 16; round++) {
            UUID id = engine.snapshotCreate(List.of("d0", "d1"));
            engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff" + round), 8 * MiB));
            engine.snapshotTake(id, TakeHooks.NONE);
            List<BlockDevice> images = engine.snapshotCollectImages(id).stream().map(i -> engine.image(i.image())).toList();
            AtomicBoolean stop = new AtomicBoolean();
            AtomicLongArray loops = new AtomicLongArray(threads);
            AtomicLongArray destroyed = new AtomicLongArray(threads);
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int me = t;
                ts.add(Thread.ofVirtual().start(() -> {
                    SplittableRandom r = new SplittableRandom(me);
                    BlockDevice orig = engine.device("d" + (me % 2));
                    BlockDevice img = images.get(me % 2);
                    while (!stop.get()) {
                        long off = (long) r.nextInt(BLOCKS) * BLOCK;
                        try {
                            orig.write(stamp(me % 2, (int) (off / BLOCK), 1), off);
                        } catch (Throwable e) {
                            unexpected.add(e);
                            return;
                        }
                        try {
                            if (me >= 2) {
                                Io.read(img, off, 64 * (int) KiB > DEVICE_BYTES - off ? BLOCK : 64 * (int) KiB);
                            } else {
                                img.write(stamp(me % 2, (int) (off / BLOCK), 2), off);
                            }
                        } catch (BlksnapException e) {
                            if (e.errno() == Errno.ENODEV) {
                                destroyed.incrementAndGet(me);
                            } else {
                                unexpected.add(e);
                            }
                        } catch (Throwable e) {
                            unexpected.add(e);
                        }
                        loops.incrementAndGet(me);
                        // Once the image is gone these loops never block: see Io.pauseBetweenRequests.
                        Io.pauseBetweenRequests();
                    }
                }));
            }
            soon("every thread busy on the live snapshot")
                    .until(() -> IntStream.range(0, threads).allMatch(t -> loops.get(t) >= 2));
            assertThat(copy(destroyed)).as("ENODEV of image I/O before the destroy, by thread").containsOnly(0);
            engine.snapshotDestroy(id);
            // The loop each thread is in may have begun before the destroy; the one after it began after.
            long[] atDestroy = copy(loops);
            soon("every thread through a loop begun after the destroy")
                    .until(() -> IntStream.range(0, threads).allMatch(t -> loops.get(t) >= atDestroy[t] + 2));
            stop.set(true);
            for (Thread t : ts) {
                assertThat(t.join(java.time.Duration.ofSeconds(10))).isTrue();
            }
            assertThat(copy(destroyed)).as("round %d: ENODEV of image I/O after the destroy, by thread", round)
                    .doesNotContain(0L);
        }
        assertThat(unexpected).isEmpty();
    }

    /**
     * A take (and a destroy) closes the device barriers while writers keep coming. The barrier must
     * hold back new writers once a take waits, so the take waits only for the writes already inside;
     * a lock that lets new readers barge past a waiting writer starves the take for as long as the
     * writes overlap. The backing device here takes 2 ms per write, so 8 writers always overlap.
     */
    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void takeAndDestroyAreNotStarvedByAContinuousStreamOfOverlappingWrites() throws Exception {
        Params p = new Params();
        p.set("chunk_minimum_shift", 14);
        p.set("diff_storage_minimum", 1024);
        engine = BlksnapModule.init(p);
        engine.addDevice("d0", new SlowWrites(BlockDevices.open(dir.resolve("d0.img"), DEVICE_BYTES, false), 2));
        BlockDevice orig = engine.device("d0");
        AtomicBoolean stop = new AtomicBoolean();
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        AtomicLong writes = new AtomicLong();
        List<Thread> writers = new ArrayList<>();
        for (int w = 0; w < 8; w++) {
            int me = w;
            writers.add(Thread.ofVirtual().start(() -> {
                SplittableRandom r = new SplittableRandom(me);
                try {
                    while (!stop.get()) {
                        int block = r.nextInt(BLOCKS);
                        orig.write(stamp(0, block, 1), (long) block * BLOCK);
                        writes.incrementAndGet();
                    }
                } catch (Throwable t) {
                    errors.add(t);
                }
            }));
        }
        soon("the writers stream").until(() -> writes.get() >= 2 * 8);
        try {
            for (int round = 0; round < 3; round++) {
                UUID id = engine.snapshotCreate(List.of("d0"));
                engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff" + round), 8 * MiB));
                java.util.concurrent.CompletableFuture<Void> take = java.util.concurrent.CompletableFuture.runAsync(
                        () -> engine.snapshotTake(id, TakeHooks.NONE), r -> Thread.ofVirtual().start(r));
                take.get(5, TimeUnit.SECONDS);
                java.util.concurrent.CompletableFuture<Void> destroy = java.util.concurrent.CompletableFuture.runAsync(
                        () -> engine.snapshotDestroy(id), r -> Thread.ofVirtual().start(r));
                destroy.get(5, TimeUnit.SECONDS);
            }
        } finally {
            stop.set(true);
        }
        for (Thread t : writers) {
            assertThat(t.join(java.time.Duration.ofSeconds(10))).as("writer finished").isTrue();
        }
        assertThat(errors).isEmpty();
    }

    /** A backing device whose writes take {@code millis}: writers stay inside the barrier that long. */
    private record SlowWrites(BlockDevice backing, long millis) implements BlockDevice {
        @Override
        public String name() {
            return backing.name();
        }

        @Override
        public long sizeBytes() {
            return backing.sizeBytes();
        }

        @Override
        public int logicalBlockSize() {
            return backing.logicalBlockSize();
        }

        @Override
        public void read(ByteBuffer dst, long offsetBytes) throws java.io.IOException {
            backing.read(dst, offsetBytes);
        }

        @Override
        public void write(ByteBuffer src, long offsetBytes) throws java.io.IOException {
            try {
                Thread.sleep(millis); // the device's latency, which keeps the writers overlapping: not synchronization
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("slow write interrupted");
            }
            backing.write(src, offsetBytes);
        }

        @Override
        public void flush() throws java.io.IOException {
            backing.flush();
        }

        @Override
        public void discard(long offsetBytes, long lengthBytes) throws java.io.IOException {
            backing.discard(offsetBytes, lengthBytes);
        }

        @Override
        public void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) throws java.io.IOException {
            backing.writeZeroes(offsetBytes, lengthBytes, mayUnmap);
        }

        @Override
        public void close() throws java.io.IOException {
            backing.close();
        }
    }
}
