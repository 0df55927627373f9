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
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;

/**
 * In-process engine measurements that fio cannot make: the latency of SNAPSHOT_TAKE for 1, 4 and
 * 16 sparse devices of 1 TiB (idle, and while a writer thread issues 4 KiB writes to every device),
 * and the heap that a tracker and a snapshot hold for idle devices of 1 GiB, 1 TiB and 10 TiB.
 *
 * <pre>
 * java -cp target/bench/benchmarks.jar org.blksnap.bench.EngineProbe --dir /dev/shm/probe [--quick] [--tsv FILE]
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

    private EngineProbe(Path dir, boolean quick, PrintStream tsv) {
        this.dir = dir;
        this.quick = quick;
        this.tsv = tsv;
    }

    public static void main(String[] args) throws Exception {
        Path dir = Path.of("/dev/shm/blksnap-probe");
        boolean quick = false;
        Path tsvPath = null;
        String only = "take,heap";
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--dir" -> dir = Path.of(args[++i]);
                case "--quick" -> quick = true;
                case "--tsv" -> tsvPath = Path.of(args[++i]);
                case "--only" -> only = args[++i];
                default -> throw new IllegalArgumentException("unknown argument " + args[i]
                        + " (--dir DIR --quick --tsv FILE --only take,heap)");
            }
        }
        Files.createDirectories(dir);
        try (PrintStream tsv = tsvPath == null ? null : new PrintStream(Files.newOutputStream(tsvPath,
                StandardOpenOption.CREATE, StandardOpenOption.APPEND), true)) {
            EngineProbe p = new EngineProbe(dir, quick, tsv);
            if (only.contains("take")) {
                for (int n : new int[] {1, 4, 16}) {
                    p.take(n, false);
                    p.take(n, true);
                }
            }
            if (only.contains("heap")) {
                p.heap(GIB, "1G");
                p.heap(TIB, "1T");
                p.heap(10 * TIB, "10T");
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

    private Blksnap engineWith(int devices, long sizeBytes, String tag) throws IOException {
        Blksnap engine = BlksnapModule.init(new Params());
        for (int i = 0; i < devices; i++) {
            Path f = dir.resolve(tag + "-dev" + i + ".img");
            Files.deleteIfExists(f);
            BlockDevice dev = BlockDevices.open(f, sizeBytes, false);
            engine.addDevice("d" + i, dev);
        }
        return engine;
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
}
