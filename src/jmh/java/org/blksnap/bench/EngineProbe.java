package org.blksnap.bench;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Params;
import org.blksnap.engine.Persistence;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.blksnap.util.FileTrees;

/**
 * In-process engine measurements that fio cannot make: the latency of SNAPSHOT_TAKE for 1, 4 and
 * 16 sparse devices of 1 TiB (idle, and while a writer thread issues 4 KiB writes to every device),
 * and the heap that a tracker and a snapshot hold for idle devices of 1 GiB, 1 TiB and 10 TiB.
 *
 * <p>{@code --only scale} measures how costs grow (issue 14's cost curves): take latency and heap
 * for 1, 16 and 64 devices of 1 TiB and for one device of 1 GiB to 64 TiB; first-pass copy-on-write
 * throughput with 1, 4 and 16 writers, each on its own device of one snapshot (1 MiB sequential
 * writes, 1 GiB in all, storage written once before so its pages exist); image read throughput with
 * 1, 4 and 16 readers (1 MiB sequential reads of each device's image), cold (nothing copied) and
 * after the copy-on-write pass (everything read from the storage). Devices of 64 TiB need a
 * filesystem that holds sparse files that large (tmpfs does; ext4 stops at 16 TiB); {@code --only cow}
 * runs the copy-on-write and reader curves alone (for a directory on a disk).
 *
 * <p>{@code --state DIR} gives every engine of the scale and cow curves persistent change tracking in
 * {@code DIR} (as the daemon keeps it by default: a journal and a checkpoint per tracker, so a take
 * also makes every tracker's checkpoint durable); their keys end in {@code -persist}. The device-count
 * curve then runs a second time with every tracking block marked changed first (keys ending in
 * {@code -persist-written}): a checkpoint leaves out the map pages that are all zero, so idle devices
 * are its best case and devices written all over its worst.
 *
 * <pre>
 * java -cp target/bench/benchmarks.jar org.blksnap.bench.EngineProbe --dir /dev/shm/probe [--quick] [--tsv FILE]
 *      [--only take,heap,scale] [--state DIR]
 * </pre>
 *
 * Heap is measured with G1 (run with -XX:+UseG1GC): used heap after System.gc(), before and after.
 * Output: a human-readable log on stderr; with --tsv, lines "engine KEY STAT ROUND VALUE UNIT"
 * appended for bench/summarize.py.
 */
public final class EngineProbe {
    private static final long TIB = 1L << 40;
    private static final long GIB = 1L << 30;
    private static final int LOAD_REGION_BYTES = 16 << 20;

    private final Path dir;
    private final boolean quick;
    private final PrintStream tsv;
    /** Where the engines of the scale and cow curves keep their change tracking; null: in memory only. */
    private final Path state;
    /** Appended to the keys of the scale and cow curves: "-persist" with {@link #state}. */
    private final String suffix;

    private EngineProbe(Path dir, boolean quick, PrintStream tsv, Path state) {
        this.dir = dir;
        this.quick = quick;
        this.tsv = tsv;
        this.state = state;
        this.suffix = state == null ? "" : "-persist";
    }

    public static void main(String[] args) throws Exception {
        Path dir = Path.of("/dev/shm/blksnap-probe");
        boolean quick = false;
        Path tsvPath = null;
        Path state = null;
        String only = "take,heap";
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--dir" -> dir = Path.of(args[++i]);
                case "--quick" -> quick = true;
                case "--tsv" -> tsvPath = Path.of(args[++i]);
                case "--only" -> only = args[++i];
                case "--state" -> state = Path.of(args[++i]);
                default -> throw new IllegalArgumentException("unknown argument " + args[i]
                        + " (--dir DIR --quick --tsv FILE --only take,heap,scale,devices,cow --state DIR)");
            }
        }
        Files.createDirectories(dir);
        try (PrintStream tsv = tsvPath == null ? null : new PrintStream(Files.newOutputStream(tsvPath,
                StandardOpenOption.CREATE, StandardOpenOption.APPEND), true)) {
            EngineProbe p = new EngineProbe(dir, quick, tsv, state);
            if (only.contains("take") && state == null) {
                for (int n : new int[] {1, 4, 16}) {
                    p.take(n, false);
                    p.take(n, true);
                }
            }
            if (only.contains("heap") && state == null) {
                p.heap(GIB, "1G");
                p.heap(TIB, "1T");
                p.heap(10 * TIB, "10T");
            }
            if (only.contains("scale") || only.contains("devices")) {
                for (int n : new int[] {1, 16, 64}) {
                    p.scaleDevices(n, TIB, n + "dev-1T", false);
                }
                if (state != null) {
                    for (int n : new int[] {1, 16, 64}) {
                        p.scaleDevices(n, TIB, n + "dev-1T", true);
                    }
                }
            }
            if (only.contains("scale")) {
                for (long size : new long[] {GIB, 64 * GIB, TIB, 16 * TIB, 64 * TIB}) {
                    p.scaleDevices(1, size, "1dev-" + label(size), false);
                }
            }
            if (only.contains("scale") || only.contains("cow")) {
                for (int n : new int[] {1, 4, 16}) {
                    p.cowAndReaders(n);
                }
            }
        } finally {
            try (var s = Files.list(dir)) {
                for (Path f : s.toList()) {
                    Files.deleteIfExists(f);
                }
            }
        }
    }

    private void record(String key, String stat, double value, String unit) {
        System.err.printf("%-28s %-9s %12.3f %s%n", key, stat, value, unit);
        if (tsv != null) {
            tsv.printf("engine\t%s\t%s\t1\t%.6f\t%s%n", key, stat, value, unit);
        }
    }

    /**
     * An engine with {@code devices} sparse devices of {@code sizeBytes}; with {@link #state}, its change
     * tracking kept in a fresh directory {@code state/tag} (see {@link #forgetState}).
     */
    private Blksnap engineWith(int devices, long sizeBytes, String tag) throws IOException {
        Blksnap engine;
        if (state == null) {
            engine = BlksnapModule.init(new Params());
        } else {
            forgetState(tag);
            engine = BlksnapModule.init(new Params(), Persistence.in(state.resolve(tag)));
        }
        for (int i = 0; i < devices; i++) {
            Path f = dir.resolve(tag + "-dev" + i + ".img");
            Files.deleteIfExists(f);
            BlockDevice dev = BlockDevices.open(f, sizeBytes, false);
            engine.addDevice("d" + i, dev);
        }
        return engine;
    }

    /**
     * Waits until the checkpoints {@code engine} writes in the background after a take are durable
     * (nothing without persistence). The engine's state store is private to it, so reflection.
     */
    private static void awaitCheckpoints(Blksnap engine) {
        try {
            java.lang.reflect.Field f = engine.getClass().getDeclaredField("state");
            f.setAccessible(true);
            Object store = f.get(engine);
            if (store instanceof org.blksnap.engine.state.StateStore s) {
                s.awaitBackground();
            }
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("the engine's state store is not where the probe looks: " + e, e);
        }
    }

    /** Deletes what an engine of {@code tag} kept under {@link #state} (nothing without one). */
    private void forgetState(String tag) throws IOException {
        if (state == null) {
            return;
        }
        FileTrees.deleteRecursively(state.resolve(tag));
    }

    private UUID createWithStorage(Blksnap engine, List<String> names, long storageBytes, String tag) {
        UUID id = engine.snapshotCreate(names);
        Path s = dir.resolve(tag + "-diff.img");
        try {
            Files.deleteIfExists(s);
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
        engine.snapshotAppendStorage(id, new StorageSpec(s, storageBytes, false, List.of()));
        return id;
    }

    /** Take latency: median and p90 over several takes (create and storage not timed). */
    private void take(int devices, boolean underLoad) throws Exception {
        int reps = quick ? 7 : 25;
        String tag = "take" + devices;
        try (Blksnap engine = engineWith(devices, TIB, tag)) {
            List<String> names = engine.deviceNames();
            AtomicBoolean stop = new AtomicBoolean();
            AtomicLong writes = new AtomicLong();
            Thread writer = null;
            if (underLoad) {
                List<BlockDevice> devs = names.stream().map(engine::device).toList();
                writer = Thread.ofPlatform().name("probe-writer").start(() -> {
                    ByteBuffer b = ByteBuffer.allocateDirect(4096);
                    ThreadLocalRandom rnd = ThreadLocalRandom.current();
                    int i = 0;
                    while (!stop.get()) {
                        BlockDevice d = devs.get(i++ % devs.size());
                        try {
                            b.clear();
                            d.write(b, rnd.nextLong(LOAD_REGION_BYTES) & ~4095L);
                            writes.incrementAndGet();
                        } catch (IOException | RuntimeException e) {
                            // the snapshot of the moment may be gone; the load goes on
                        }
                    }
                });
            }
            double[] ms = new double[reps];
            long storage = (long) devices * (2L * LOAD_REGION_BYTES) + (64L << 20);
            // one untimed round first: attaches the trackers (CBT maps) and warms up the code
            for (int r = -2; r < reps; r++) {
                UUID id = createWithStorage(engine, names, storage, tag);
                long t0 = System.nanoTime();
                engine.snapshotTake(id, TakeHooks.NONE);
                long t1 = System.nanoTime();
                if (r >= 0) {
                    ms[r] = (t1 - t0) / 1e6;
                }
                if (underLoad) {
                    Thread.sleep(20);
                }
                engine.snapshotDestroy(id);
            }
            stop.set(true);
            if (writer != null) {
                writer.join();
            }
            Arrays.sort(ms);
            String key = "take-" + devices + "dev-1T-" + (underLoad ? "load" : "idle");
            record(key, "median", ms[reps / 2], "ms");
            record(key, "p90", ms[(int) Math.ceil(reps * 0.9) - 1], "ms");
            if (underLoad) {
                System.err.printf("  (%d writes of 4 KiB during the takes)%n", writes.get());
            }
        }
    }

    private static long usedHeapAfterGc() throws InterruptedException {
        MemoryMXBean mx = ManagementFactory.getMemoryMXBean();
        long best = Long.MAX_VALUE;
        for (int i = 0; i < 3; i++) {
            System.gc();
            Thread.sleep(50);
            best = Math.min(best, mx.getHeapMemoryUsage().getUsed());
        }
        return best;
    }

    /** Heap of the tracker (CBT maps) and of one idle taken snapshot, for one device of sizeBytes. */
    private void heap(long sizeBytes, String label) throws Exception {
        String tag = "heap" + label;
        List<Double> trackers = new ArrayList<>();
        List<Double> snaps = new ArrayList<>();
        try (Blksnap engine = engineWith(1, sizeBytes, tag)) {
            List<String> names = engine.deviceNames();
            for (int r = 0; r < 3; r++) {
                long before = usedHeapAfterGc();
                UUID id = createWithStorage(engine, names, 64L << 20, tag);
                engine.snapshotTake(id, TakeHooks.NONE);
                long taken = usedHeapAfterGc();
                engine.snapshotDestroy(id);
                long after = usedHeapAfterGc();
                if (r == 0) {
                    trackers.add((after - before) / 1048576.0); // the tracker stays attached
                }
                snaps.add((taken - after) / 1048576.0);
            }
        }
        snaps.sort(null);
        record("heap-tracker-" + label, "tracker", trackers.getFirst(), "MiB");
        record("heap-per-snapshot-" + label, "snapshot", snaps.get(snaps.size() / 2), "MiB");
    }
    private static String label(long bytes) {
        return bytes >= TIB ? bytes / TIB + "T" : bytes / GIB + "G";
    }

    /**
     * One point of the device-count and device-size curves: take latency (idle, median and p90),
     * the heap of the trackers, and the heap one taken snapshot adds, for {@code devices} sparse
     * devices of {@code sizeBytes}.
     */
    private void scaleDevices(int devices, long sizeBytes, String label, boolean written) throws Exception {
        int reps = quick ? 5 : 11;
        String tag = "scale" + label;
        label = label + suffix + (written ? "-written" : "");
        long before = usedHeapAfterGc();
        try (Blksnap engine = engineWith(devices, sizeBytes, tag)) {
            List<String> names = engine.deviceNames();
            if (written) {
                // Every tracking block changed (mark-dirty of the whole device: no data written), so no
                // page of any map is zero: what a checkpoint of a device written all over costs.
                UUID id = createWithStorage(engine, names, 64L << 20, tag); // attaches the trackers
                engine.snapshotDestroy(id);
                for (String name : names) {
                    engine.trackerMarkDirty(name, List.of(new SectorRange(0, sizeBytes / SectorRange.SECTOR_BYTES)));
                }
            }
            double[] ms = new double[reps];
            double[] settledMs = new double[reps];
            double[] snapMiB = new double[reps];
            double trackerMiB = 0;
            for (int r = -1; r < reps; r++) {
                long idle = usedHeapAfterGc();
                if (r == 0) {
                    trackerMiB = (idle - before) / 1048576.0; // the trackers attached by the untimed round
                }
                UUID id = createWithStorage(engine, names, 64L << 20, tag);
                long t0 = System.nanoTime();
                engine.snapshotTake(id, TakeHooks.NONE);
                long t1 = System.nanoTime();
                awaitCheckpoints(engine);
                long t2 = System.nanoTime();
                if (r >= 0) {
                    ms[r] = (t1 - t0) / 1e6;
                    settledMs[r] = (t2 - t0) / 1e6;
                    snapMiB[r] = (usedHeapAfterGc() - idle) / 1048576.0;
                }
                engine.snapshotDestroy(id);
            }
            Arrays.sort(ms);
            Arrays.sort(settledMs);
            Arrays.sort(snapMiB);
            String key = "scale-take-" + label;
            record(key, "median", ms[reps / 2], "ms");
            record(key, "p90", ms[(int) Math.ceil(reps * 0.9) - 1], "ms");
            if (state != null) {
                // until the checkpoints a take leaves to the background are durable (what a take right
                // after it would wait for)
                record("scale-take-settled-" + label, "median", settledMs[reps / 2], "ms");
            }
            record("scale-heap-trackers-" + label, "tracker", trackerMiB, "MiB");
            record("scale-heap-snapshot-" + label, "snapshot", snapMiB[reps / 2], "MiB");
        } finally {
            forgetState(tag);
        }
    }

    /**
     * Copy-on-write and image-read throughput with {@code n} concurrent threads, each on its own
     * device of one snapshot; 1 GiB in all ({@code 1 GiB / n} per device, written once with data
     * before). Medians of three rounds, each round a fresh snapshot on storage written once before.
     */
    private void cowAndReaders(int n) throws Exception {
        long total = quick ? 256L << 20 : GIB;
        long per = total / n;
        int rounds = quick ? 1 : 3;
        String tag = "cow" + n;
        double[] cow = new double[rounds];
        double[] cold = new double[rounds];
        double[] copied = new double[rounds];
        try (Blksnap engine = engineWith(n, per, tag)) {
            List<String> names = engine.deviceNames();
            List<BlockDevice> devs = names.stream().map(engine::device).toList();
            parallel(n, i -> sequential(devs.get(i), per, true)); // real data on every device
            Path storage = dir.resolve(tag + "-diff.img");
            long storageBytes = total + total / 4;
            for (int r = 0; r < rounds; r++) {
                writeOnce(storage, storageBytes); // pages exist before the timed passes
                UUID id = engine.snapshotCreate(names);
                engine.snapshotAppendStorage(id, StorageSpec.whole(storage));
                engine.snapshotTake(id, TakeHooks.NONE);
                var imageOf = engine.snapshotCollectImages(id).stream().collect(java.util.stream.Collectors.toMap(
                        org.blksnap.engine.ImageInfo::device, org.blksnap.engine.ImageInfo::image));
                List<BlockDevice> images = names.stream().map(name -> engine.image(imageOf.get(name))).toList();
                cold[r] = parallel(n, i -> sequential(images.get(i), per, false)) / 1048576.0;
                cow[r] = parallel(n, i -> sequential(devs.get(i), per, true)) / 1048576.0;
                copied[r] = parallel(n, i -> sequential(images.get(i), per, false)) / 1048576.0;
                engine.snapshotDestroy(id);
            }
        } finally {
            Files.deleteIfExists(dir.resolve(tag + "-diff.img"));
            forgetState(tag);
        }
        Arrays.sort(cow);
        Arrays.sort(cold);
        Arrays.sort(copied);
        record("scale-cow-1M-" + n + "writers" + suffix, "median", cow[rounds / 2], "MiB/s");
        record("scale-image-read-1M-cold-" + n + "readers" + suffix, "median", cold[rounds / 2], "MiB/s");
        record("scale-image-read-1M-copied-" + n + "readers" + suffix, "median", copied[rounds / 2], "MiB/s");
    }

    /** Writes {@code sizeBytes} of zeros to {@code file} (created or truncated), so its pages exist. */
    private static void writeOnce(Path file, long sizeBytes) throws IOException {
        try (var ch = java.nio.channels.FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer zeros = ByteBuffer.allocateDirect(1 << 20);
            for (long pos = 0; pos < sizeBytes; pos += 1 << 20) {
                zeros.clear().limit((int) Math.min(1 << 20, sizeBytes - pos));
                while (zeros.hasRemaining()) {
                    ch.write(zeros, pos + zeros.position());
                }
            }
        }
    }

    /** Reads or writes the whole device in 1 MiB requests, in order; written data differs per call. */
    private static void sequential(BlockDevice d, long sizeBytes, boolean write) throws IOException {
        ByteBuffer b = ByteBuffer.allocateDirect(1 << 20);
        if (write) {
            long seed = ThreadLocalRandom.current().nextLong();
            for (int i = 0; i < b.capacity(); i += 8) {
                b.putLong(i, seed ^ i);
            }
        }
        for (long pos = 0; pos < sizeBytes; pos += b.capacity()) {
            b.clear().limit((int) Math.min(b.capacity(), sizeBytes - pos));
            if (write) {
                d.write(b, pos);
            } else {
                d.read(b, pos);
            }
        }
    }

    private interface DeviceJob {
        void run(int index) throws IOException;
    }

    /** Runs {@code job} for 0..n-1 on n platform threads at once; returns the bytes per second of 1 GiB in all. */
    private double parallel(int n, DeviceJob job) throws Exception {
        List<Thread> threads = new ArrayList<>();
        List<Throwable> failures = java.util.Collections.synchronizedList(new ArrayList<>());
        java.util.concurrent.CountDownLatch go = new java.util.concurrent.CountDownLatch(1);
        for (int i = 0; i < n; i++) {
            int index = i;
            threads.add(Thread.ofPlatform().name("probe-" + i).start(() -> {
                try {
                    go.await();
                    job.run(index);
                } catch (Throwable t) {
                    failures.add(t);
                }
            }));
        }
        long t0 = System.nanoTime();
        go.countDown();
        for (Thread t : threads) {
            t.join();
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        if (!failures.isEmpty()) {
            throw new IllegalStateException("a probe thread failed", failures.getFirst());
        }
        return (quick ? 256L << 20 : GIB) / seconds;
    }
}
