package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import java.io.IOException;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import org.blksnap.testing.NbdTestClient;
import org.blksnap.testing.TestSector;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Port of upstream {@code test_corrupt --multithread} (tests/cpp/corrupt.cpp) over NBD, as a soak:
 * one writer thread per device writes random ranges of test sectors ({@link TestSector}) with FUA
 * (upstream opens with O_SYNC), a random number of ranges then a short random pause, without end;
 * meanwhile the main loop snapshots all devices at once, checks every sector of every image with one
 * checker thread per image while the writers go on (a copy-on-write storm), destroys the snapshot
 * and starts again, until the duration is over.
 *
 * <p>An image sector is right when it is a test sector of its own LBA (CRC and LBA), not newer than
 * the last write its writer had started when the take returned (nothing written after the take
 * leaks in), and not older than what its writer had acknowledged before the take was called
 * (nothing acknowledged before it is lost). Upstream's debug block that scribbles on the images
 * after 30 s is left out (docs: it makes every run longer than 30 s fail by design).
 *
 * <p>Heap (after a full GC), platform threads, direct memory and resident memory of the JVM (the
 * daemon runs in it, through {@link DaemonHarness}) are sampled over the run; the test asserts that
 * the last third stays within a margin of the first third.
 *
 * <p>{@code -Dblksnap.soak.seconds=N} (default 60). The recorded run: {@code bin/test
 * -Dtest=CorruptSoakTest -Dblksnap.soak.seconds=1800}; it prints {@code SOAK-SAMPLE} lines and a
 * {@code SOAK-SUMMARY}.
 */
@Tag("system")
class CorruptSoakTest {
    private static final Logger LOG = LoggerFactory.getLogger(CorruptSoakTest.class);
    static final int DEVICES = 3;
    static final long DEVICE_BYTES = 32L << 20;
    static final int SECTOR = TestSector.SECTOR_BYTES;
    static final int SECTORS = (int) (DEVICE_BYTES / SECTOR);
    static final int PIECE = 1 << 20;

    @TempDir
    Path dir;

    /** One device's writer: its generator, what it acknowledged per sector, the last seq it started. */
    static final class Writer {
        final String device;
        final TestSector.Generator gen;
        final AtomicIntegerArray acked = new AtomicIntegerArray(SECTORS);
        volatile int started;
        final AtomicLong writes = new AtomicLong();
        final AtomicLong bytes = new AtomicLong();

        Writer(String device, long seed) {
            this.device = device;
            this.gen = new TestSector.Generator(seed, false);
        }

        int[] ackedCopy() {
            int[] copy = new int[SECTORS];
            for (int i = 0; i < SECTORS; i++) {
                copy[i] = acked.get(i);
            }
            return copy;
        }
    }

    /** A sample of the JVM's resources. */
    record Sample(long seconds, long heapBytes, int threads, long directBytes, long rssBytes) {
    }

    @Test
    @Timeout(value = 1, unit = TimeUnit.DAYS) // the run's own limit below follows the duration
    void imagesHoldExactlyTheTakeTimeSectorsWhileWritersRunAndResourcesStayFlat() {
        long seconds = Long.getLong("blksnap.soak.seconds", 60);
        assertTimeoutPreemptively(Duration.ofSeconds(seconds + 240), () -> soak(seconds));
    }

    private void soak(long seconds) throws Exception {
        long seed = Long.getLong("blksnap.soak.seed", System.nanoTime());
        LOG.info("soak: {} s, {} devices of {} MiB, seed {}", seconds, DEVICES, DEVICE_BYTES >> 20, seed);
        SplittableRandom rnd = new SplittableRandom(seed);
        Path data = dir.resolve("data");
        List<String> devices = new ArrayList<>();
        for (int i = 0; i < DEVICES; i++) {
            devices.add("s" + i + "=" + (DEVICE_BYTES >> 20) + "M");
        }
        List<String> errors = Collections.synchronizedList(new ArrayList<>());
        List<Sample> samples = new ArrayList<>();
        long snapshots = 0;
        long checkedBytes = 0;
        try (DaemonHarness d = DaemonHarness.start(data, devices, List.of("diff_storage_minimum=65536"))) {
            Path nbd = data.resolve("nbd.sock");
            List<Writer> writers = new ArrayList<>();
            for (int i = 0; i < DEVICES; i++) {
                Writer w = new Writer("s" + i, rnd.nextLong());
                fill(nbd, w);
                writers.add(w);
            }
            AtomicBoolean run = new AtomicBoolean(true);
            List<Thread> threads = new ArrayList<>();
            for (Writer w : writers) {
                long writerSeed = rnd.nextLong();
                threads.add(Thread.ofPlatform().name("soak-writer-" + w.device)
                        .start(() -> writeUntilStopped(nbd, w, new SplittableRandom(writerSeed), run, errors)));
            }
            long t0 = System.nanoTime();
            long deadline = t0 + TimeUnit.SECONDS.toNanos(seconds);
            long nextSample = t0;
            long sampleEvery = TimeUnit.SECONDS.toNanos(Math.max(5, seconds / 30));
            try {
                while (System.nanoTime() < deadline && errors.isEmpty()) {
                    if (System.nanoTime() >= nextSample) {
                        samples.add(sample((System.nanoTime() - t0) / 1_000_000_000L));
                        nextSample += sampleEvery;
                    }
                    checkedBytes += cycle(d, nbd, writers, snapshots, errors);
                    snapshots++;
                }
                samples.add(sample((System.nanoTime() - t0) / 1_000_000_000L));
            } finally {
                run.set(false);
                for (Thread t : threads) {
                    t.join();
                }
            }
            long writes = writers.stream().mapToLong(w -> w.writes.get()).sum();
            long written = writers.stream().mapToLong(w -> w.bytes.get()).sum();
            String summary = "SOAK-SUMMARY seconds=" + seconds + " seed=" + seed + " devices=" + DEVICES
                    + " writes=" + writes + " writtenBytes=" + written + " snapshots=" + snapshots
                    + " checkedBytes=" + checkedBytes + " errors=" + errors.size();
            LOG.info(summary);
            System.out.println(summary);
        }
        assertThat(errors).as("corruptions and I/O errors").isEmpty();
        assertThat(snapshots).as("snapshots taken, checked and destroyed").isPositive();
        assertFlat(samples);
    }

    /** Fills the whole device with test sectors of seq 1, so that every sector is a test sector. */
    private static void fill(Path nbd, Writer w) throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(nbd, w.device)) {
            int seq = w.gen.nextSeq();
            for (long off = 0; off < DEVICE_BYTES; off += PIECE) {
                c.write(off, w.gen.sectors(off / SECTOR, PIECE / SECTOR), false);
            }
            c.flush();
            for (int i = 0; i < SECTORS; i++) {
                w.acked.set(i, seq);
            }
            w.started = seq;
        }
    }

    /** Upstream's writer: {@code rand & 0x3F} ranges of 1-32 sectors, then a pause (here 0-20 ms). */
    private static void writeUntilStopped(Path nbd, Writer w, SplittableRandom rnd, AtomicBoolean run,
                                          List<String> errors) {
        try (NbdTestClient c = NbdTestClient.connect(nbd, w.device)) {
            while (run.get()) {
                int ranges = rnd.nextInt(64);
                for (int r = 0; r < ranges && run.get(); r++) {
                    int sectors = 1 + rnd.nextInt(32);
                    int first = rnd.nextInt(SECTORS - sectors + 1);
                    int seq = w.gen.nextSeq();
                    w.started = seq;
                    c.write((long) first * SECTOR, w.gen.sectors(first, sectors), true);
                    for (int i = 0; i < sectors; i++) {
                        w.acked.set(first + i, seq);
                    }
                    w.writes.incrementAndGet();
                    w.bytes.addAndGet((long) sectors * SECTOR);
                }
                Thread.sleep(rnd.nextInt(21));
            }
        } catch (IOException | InterruptedException e) {
            errors.add("writer of " + w.device + ": " + e);
        }
    }

    /** One snapshot of every device: take, check every image sector by one thread per image, destroy. */
    private static long cycle(DaemonHarness d, Path nbd, List<Writer> writers, long n, List<String> errors)
            throws Exception {
        List<String> args = new ArrayList<>(List.of("snapshot", "create"));
        for (Writer w : writers) {
            args.add("--device");
            args.add(w.device);
        }
        String id = d.ok(args.toArray(String[]::new));
        Path storage = d.dataDir().resolve("soak-storage-" + n + ".img");
        d.ok("snapshot", "append-storage", "--id", id, "--file", storage.toString(),
                "--size", (DEVICES * DEVICE_BYTES >> 20) + "M");
        Map<String, int[]> lower = new HashMap<>();
        for (Writer w : writers) {
            lower.put(w.device, w.ackedCopy());
        }
        d.ok("snapshot", "take", "--id", id);
        Map<String, Integer> upper = new HashMap<>();
        for (Writer w : writers) {
            upper.put(w.device, w.started);
        }
        Map<String, String> images = new HashMap<>();
        for (String line : d.ok("snapshot", "images", "--id", id).lines().toList()) {
            String[] f = line.split(" ");
            images.put(f[0], f[1]);
        }
        AtomicLong checked = new AtomicLong();
        ConcurrentLinkedQueue<Thread> checkers = new ConcurrentLinkedQueue<>();
        for (Writer w : writers) {
            String image = images.get(w.device);
            checkers.add(Thread.ofPlatform().name("soak-check-" + image).start(() -> {
                try {
                    checked.addAndGet(checkImage(nbd, image, lower.get(w.device), upper.get(w.device), errors));
                } catch (IOException e) {
                    errors.add("checking " + image + " of snapshot " + n + ": " + e);
                }
            }));
        }
        for (Thread t : checkers) {
            t.join();
        }
        String status = d.ok("--json", "status");
        if (status.contains("\"corrupted\"")) {
            errors.add("snapshot " + n + " corrupted: " + status);
        }
        d.ok("snapshot", "destroy", "--id", id);
        Files.deleteIfExists(storage);
        return checked.get();
    }

    /** Checks every sector of an image against its bounds; returns the bytes checked. */
    private static long checkImage(Path nbd, String image, int[] lower, int upper, List<String> errors)
            throws IOException {
        TestSector.Failures f = new TestSector.Failures(image);
        TestSector.Failures stale = new TestSector.Failures(image + " (older than acknowledged before the take)");
        try (NbdTestClient c = NbdTestClient.connect(nbd, image)) {
            for (long off = 0; off < DEVICE_BYTES; off += PIECE) {
                ByteBuffer b = c.read(off, PIECE);
                for (int i = 0; i < PIECE / SECTOR; i++) {
                    int lba = (int) (off / SECTOR) + i;
                    TestSector.Fault fault = TestSector.check(b, i * SECTOR, lba, upper, Long.MAX_VALUE, false);
                    int seq = TestSector.seqOf(b, i * SECTOR);
                    if (fault != null) {
                        f.add(lba, fault, seq);
                    } else if (seq < lower[lba]) {
                        stale.add(lba, TestSector.Fault.UNEXPECTED_SEQ, seq);
                    }
                }
            }
        }
        errors.addAll(f.report());
        errors.addAll(stale.report());
        return DEVICE_BYTES;
    }

    private static Sample sample(long seconds) {
        System.gc();
        Runtime rt = Runtime.getRuntime();
        long heap = rt.totalMemory() - rt.freeMemory();
        int threads = ManagementFactory.getThreadMXBean().getThreadCount();
        long direct = ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class).stream()
                .filter(b -> b.getName().equals("direct")).mapToLong(BufferPoolMXBean::getMemoryUsed).sum();
        long rss = 0;
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmRSS:")) {
                    rss = Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (IOException e) {
            LOG.warn("cannot read VmRSS: {}", e.toString());
        }
        Sample s = new Sample(seconds, heap, threads, direct, rss);
        String line = "SOAK-SAMPLE t=" + seconds + "s heapMiB=" + (heap >> 20) + " threads=" + threads
                + " directMiB=" + (direct >> 20) + " rssMiB=" + (rss >> 20);
        LOG.info(line);
        System.out.println(line);
        return s;
    }

    /** The last third of the samples stays within a margin of the first third (after warm-up). */
    private static void assertFlat(List<Sample> samples) {
        if (samples.size() < 3) {
            return;
        }
        int third = Math.max(1, samples.size() / 3);
        List<Sample> first = samples.subList(0, third);
        List<Sample> last = samples.subList(samples.size() - third, samples.size());
        long heap0 = first.stream().mapToLong(Sample::heapBytes).max().orElseThrow();
        long heap1 = last.stream().mapToLong(Sample::heapBytes).min().orElseThrow();
        int threads0 = first.stream().mapToInt(Sample::threads).max().orElseThrow();
        int threads1 = last.stream().mapToInt(Sample::threads).min().orElseThrow();
        long direct0 = first.stream().mapToLong(Sample::directBytes).max().orElseThrow();
        long direct1 = last.stream().mapToLong(Sample::directBytes).min().orElseThrow();
        assertThat(heap1).as("heap after GC, late against early (MiB %d vs %d)", heap1 >> 20, heap0 >> 20)
                .isLessThanOrEqualTo(heap0 + (64L << 20));
        assertThat(threads1).as("platform threads, late against early").isLessThanOrEqualTo(threads0 + 16);
        assertThat(direct1).as("direct memory, late against early (MiB %d vs %d)", direct1 >> 20, direct0 >> 20)
                .isLessThanOrEqualTo(direct0 + (64L << 20));
    }
}
