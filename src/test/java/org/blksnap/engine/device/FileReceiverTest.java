package org.blksnap.engine.device;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assumptions.assumeThat;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.testing.CountingSource;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link FileBlockDevice#receiver()}: writes read from their source straight into a mapping of a
 * tmpfs file ({@link MappedWindows}), only where the file holds data already.
 */
class FileReceiverTest {
    private static final long MiB = 1 << 20;
    private static final long GiB = MappedWindows.WINDOW_BYTES;
    private static final Path SHM = Path.of("/dev/shm");

    @TempDir
    Path diskDir;
    Path shm;

    @BeforeEach
    void makeShmDir() throws IOException {
        assumeThat(Files.isDirectory(SHM) && "tmpfs".equals(Files.getFileStore(SHM).type())).as("/dev/shm is tmpfs")
                .isTrue();
        shm = Files.createTempDirectory(SHM, "blksnap-receiver-");
    }

    @AfterEach
    void removeShmDir() throws IOException {
        if (shm != null) {
            try (Stream<Path> s = Files.walk(shm)) {
                for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
                    Files.deleteIfExists(p);
                }
            }
        }
    }

    /** A sparse file of {@code sizeBytes} with {@code data} written at each of {@code offsets}. */
    private static Path file(Path dir, long sizeBytes, byte[] data, long... offsets) throws IOException {
        Path p = dir.resolve("f" + System.nanoTime() + ".img");
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ch.truncate(sizeBytes);
            ch.write(ByteBuffer.allocate(1), sizeBytes - 1); // size, without data there
            for (long o : offsets) {
                ch.write(ByteBuffer.wrap(data), o);
            }
        }
        return p;
    }

    private static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        new Random(seed).nextBytes(b);
        return b;
    }

    private static byte[] readFile(Path p, long offsetBytes, int lengthBytes) throws IOException {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate(lengthBytes);
            while (b.hasRemaining() && ch.read(b, offsetBytes + b.position()) >= 0) {
                // until full
            }
            return b.array();
        }
    }

    @Test
    void noDeviceHasAReceiverUnlessAskedFor() throws Exception {
        try (BlockDevice d = BlockDevices.open(shm.resolve("plain.img"), 8 * MiB, false)) {
            assertThat(d.receiver()).as("a torn payload would break sector atomicity on a crash").isNull();
        }
    }

    @Test
    void onlyABufferedFileOnTmpfsHasAReceiver() throws Exception {
        try (BlockDevice d = BlockDevices.open(shm.resolve("a.img"), 8 * MiB, false, NativeIo.system(), true)) {
            assertThat(d.receiver()).isNotNull();
        }
        assumeThat(Files.getFileStore(diskDir).type()).as("java.io.tmpdir is not in memory").isNotIn("tmpfs", "ramfs");
        try (BlockDevice d = BlockDevices.open(diskDir.resolve("a.img"), 8 * MiB, false, NativeIo.system(), true)) {
            assertThat(d.receiver()).as("on a disk file system a mapping faults again after every write-back").isNull();
        }
        BlockDevice direct;
        try {
            direct = BlockDevices.open(shm.resolve("b.img"), 8 * MiB, true, NativeIo.system(), true);
        } catch (IOException e) {
            return; // a tmpfs without O_DIRECT (before Linux 6.6)
        }
        try (direct) {
            assertThat(direct.receiver()).as("O_DIRECT: the page cache is not where writes go").isNull();
        }
    }

    @Test
    void itAcceptsOnlyRangesThatHoldDataAndWritesWhatTheSourceHands() throws Exception {
        byte[] old = pattern((int) MiB, 1);
        Path p = file(shm, 64 * MiB, old, 4 * MiB);
        try (BlockDevice d = BlockDevices.open(p, 0, false, NativeIo.system(), true)) {
            BlockDevice.Receiver r = d.receiver();
            assertThat(r.accepts(4 * MiB, (int) MiB)).isTrue();
            assertThat(r.accepts(4 * MiB + 4096, 8192)).isTrue();
            assertThat(r.accepts(4 * MiB + 512 * 1024, (int) MiB)).as("half in a hole").isFalse();
            assertThat(r.accepts(0, 4096)).as("a hole: the page would have to be allocated").isFalse();
            assertThat(r.accepts(64 * MiB - 4096, 8192)).as("past the end").isFalse();
            assertThat(r.accepts(-4096, 4096)).isFalse();
            assertThat(r.accepts(4 * MiB, 0)).isFalse();

            byte[] fresh = pattern(256 * 1024, 2);
            AtomicInteger calls = new AtomicInteger();
            r.receive(4 * MiB + 65536, fresh.length, new CountingSource(fresh, calls));
            assertThat(calls).as("one mapping window: one read").hasValue(1);
            byte[] expected = old.clone();
            System.arraycopy(fresh, 0, expected, 65536, fresh.length);
            assertThat(readFile(p, 4 * MiB, (int) MiB)).as("in the file, seen through another descriptor")
                    .isEqualTo(expected);
            ByteBuffer back = ByteBuffer.allocate((int) MiB);
            d.read(back, 4 * MiB);
            assertThat(back.array()).isEqualTo(expected);

            d.discard(4 * MiB, 65536);
            assertThat(r.accepts(4 * MiB, 4096)).as("a punched hole is a hole again").isFalse();
            assertThat(r.accepts(4 * MiB + 65536, 4096)).isTrue();
        }
    }

    @Test
    void aReceiveAcrossTwoMappingWindowsTakesBothPartsAndAFailingSourcesErrorPassesAsItCame() throws Exception {
        byte[] old = pattern((int) MiB, 3);
        Path p = file(shm, 2 * GiB + MiB, old, GiB - MiB / 2);
        try (BlockDevice d = BlockDevices.open(p, 0, false, NativeIo.system(), true)) {
            BlockDevice.Receiver r = d.receiver();
            assertThat(r.accepts(GiB - MiB / 2, (int) MiB)).isTrue();
            byte[] fresh = pattern(256 * 1024, 4);
            AtomicInteger calls = new AtomicInteger();
            r.receive(GiB - 65536, fresh.length, new CountingSource(fresh, calls));
            assertThat(calls).as("one read per window").hasValue(2);
            assertThat(readFile(p, GiB - 65536, fresh.length)).isEqualTo(fresh);

            IOException cut = new IOException("test: the stream ended");
            byte[] other = pattern(256 * 1024, 5);
            AtomicInteger failing = new AtomicInteger();
            BlockDevice.ByteSource firstOnly = dst -> {
                if (failing.incrementAndGet() > 1) {
                    throw cut;
                }
                dst.put(other, 0, dst.remaining());
            };
            assertThatThrownBy(() -> r.receive(GiB - 65536, other.length, firstOnly)).isSameAs(cut);
            assertThat(readFile(p, GiB - 65536, 65536)).as("the first window's part landed")
                    .isEqualTo(Arrays.copyOf(other, 65536));
            assertThat(readFile(p, GiB, fresh.length - 65536)).as("the second's did not")
                    .isEqualTo(Arrays.copyOfRange(fresh, 65536, fresh.length));
        }
    }

    @Test
    void noMoreThanMaxWindowsAreMappedAndPastThemWritesStillLand() throws Exception {
        int windows = MappedWindows.MAX_WINDOWS + 1;
        byte[] old = pattern(4096, 6);
        long[] at = new long[windows];
        for (int i = 0; i < windows; i++) {
            at[i] = i * GiB + 8192;
        }
        Path p = file(shm, windows * GiB, old, at);
        try (BlockDevice d = BlockDevices.open(p, 0, false, NativeIo.system(), true)) {
            BlockDevice.Receiver r = d.receiver();
            for (int i = 0; i < windows - 1; i++) {
                assertThat(r.accepts(at[i], 4096)).as("window %d", i).isTrue();
                r.receive(at[i], 4096, new CountingSource(pattern(4096, 100 + i), new AtomicInteger()));
            }
            assertThat(r.accepts(at[windows - 1], 4096)).as("the limit is reached").isFalse();
            assertThat(r.accepts(at[3], 4096)).as("a mapped window still takes writes").isTrue();
            byte[] last = pattern(4096, 999);
            r.receive(at[windows - 1], 4096, new CountingSource(last, new AtomicInteger()));
            for (int i = 0; i < windows - 1; i++) {
                assertThat(readFile(p, at[i], 4096)).as("window %d", i).isEqualTo(pattern(4096, 100 + i));
            }
            assertThat(readFile(p, at[windows - 1], 4096)).as("written the ordinary way").isEqualTo(last);
        }
    }

    /** Threads that map the same new window at once share one mapping; every write lands. */
    @Test
    void concurrentReceivesIntoNewWindowsMapEachOnceAndEveryByteLands() throws Exception {
        int threads = 8;
        int perThread = 16;
        int blockBytes = 16 * 1024;
        byte[] zeros = new byte[(int) (4 * MiB)];
        Path p = file(shm, 4 * GiB, zeros, 0, GiB, 2 * GiB, 3 * GiB);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ, StandardOpenOption.WRITE);
             MappedWindows w = new MappedWindows(p.toString(), ch, 4 * GiB, NativeIo.system())) {
            CountDownLatch start = new CountDownLatch(1);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            List<Thread> ts = new ArrayList<>();
            long[][] addresses = new long[threads][4];
            for (int t = 0; t < threads; t++) {
                int thread = t;
                ts.add(Thread.ofPlatform().start(() -> {
                    try {
                        start.await();
                        for (int i = 0; i < perThread; i++) {
                            int window = (thread + i) % 4;
                            long at = window * GiB + (long) (thread * perThread + i) * blockBytes;
                            MemorySegment s = w.slice(at, blockBytes);
                            addresses[thread][window] = s.address() - (at - window * GiB);
                            s.asByteBuffer().put(pattern(blockBytes, thread * 1000 + i));
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                }));
            }
            start.countDown();
            for (Thread t : ts) {
                t.join();
            }
            assertThat(failure.get()).isNull();
            assertThat(w.mappedCount()).isEqualTo(4);
            for (int window = 0; window < 4; window++) {
                for (int t = 1; t < threads; t++) {
                    assertThat(addresses[t][window]).as("window %d: one mapping", window).isEqualTo(addresses[0][window]);
                }
            }
            for (int t = 0; t < threads; t++) {
                for (int i = 0; i < perThread; i++) {
                    int window = (t + i) % 4;
                    long at = window * GiB + (long) (t * perThread + i) * blockBytes;
                    assertThat(readFile(p, at, blockBytes)).isEqualTo(pattern(blockBytes, t * 1000 + i));
                }
            }
            w.close();
            assertThat(w.slice(0, 4096)).as("closed: nothing more").isNull();
        }
    }

    private static long minorFaults() throws IOException {
        String stat = Files.readString(Path.of("/proc/self/stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return Long.parseLong(f[7]); // field 10, minflt
    }

    /** A slice covering whole granules comes with its pages in the page tables: writing it faults no more. */
    @Test
    void aSliceOfWholeGranulesIsPopulatedSoWritingItTakesNoPageFaults() throws Exception {
        assumeThat(NativeIo.system().available()).isTrue();
        byte[] data = pattern((int) (8 * MiB), 7);
        Path p = file(shm, 8 * MiB, data, 0);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ, StandardOpenOption.WRITE);
             MappedWindows w = new MappedWindows(p.toString(), ch, 8 * MiB, NativeIo.system())) {
            MemorySegment whole = w.slice(MiB, (int) MiB);
            long before = minorFaults();
            whole.fill((byte) 1);
            long populated = minorFaults() - before;

            MemorySegment partial = w.slice(4 * MiB + 4096, 60 * 1024); // inside one granule: not populated
            before = minorFaults();
            partial.fill((byte) 2);
            long faulted = minorFaults() - before;
            assertThat(faulted).as("15 pages written one by one fault in").isGreaterThanOrEqualTo(15);
            assertThat(populated).as("256 pages populated in the slice").isLessThan(15);
            assertThat(readFile(p, MiB, 4096)).containsOnly(1);
        }
    }
}
