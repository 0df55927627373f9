package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.device.NativeIo;
import org.blksnap.engine.event.EventQueue;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Copy-on-write inside the kernel (copy_file_range): the stored chunk holds the take-time bytes
 * whichever way it was copied, the kernel path is really taken where it can be, and a refusal falls
 * back to the buffer for good without losing a chunk.
 */
class KernelCopyTest {
    private static final int CHUNK = 64 << 10;
    /** Eight full chunks and a short last one. */
    private static final long CAPACITY = 8L * CHUNK + 12_288;

    @TempDir
    Path dir;
    private final List<AutoCloseable> open = new ArrayList<>();

    @AfterEach
    void down() throws Exception {
        for (AutoCloseable c : open.reversed()) {
            c.close();
        }
    }

    private record Setup(BlockDevice original, byte[] takeTime, DiffStorage storage, ChunkTable table, ChunkGeometry geometry) {
    }

    private Setup setup(Path originalDir, NativeIo copies) throws IOException {
        byte[] takeTime = new byte[(int) CAPACITY];
        new Random(7).nextBytes(takeTime);
        BlockDevice original = BlockDevices.open(originalDir.resolve("orig-" + System.nanoTime() + ".img"), CAPACITY, false);
        open.add(original);
        original.write(ByteBuffer.wrap(takeTime), 0);
        DiffStorage storage = new DiffStorage("s", new EventQueue("s"), 64, NativeIo.system());
        open.add(storage);
        storage.append(StorageSpec.create(dir.resolve("diff.img"), 16L * CHUNK), p -> false);
        ChunkGeometry g = new ChunkGeometry(CAPACITY, 16);
        DiffBufferPool pool = new DiffBufferPool(g.chunkSizeBytes(), () -> 4);
        ChunkTable table = new ChunkTable(g, original, storage, new DoneBitmap(g.chunkCount()), pool,
                new ChunkCache(() -> 4, pool), new KernelCopy("orig", copies));
        return new Setup(original, takeTime, storage, table, g);
    }

    private static void storeAll(Setup s) throws IOException {
        for (long i = 0; i < s.geometry().chunkCount(); i++) {
            store(s, i);
        }
    }

    private static void store(Setup s, long index) throws IOException {
        Chunk c = s.table().chunk(index);
        c.lock.lock();
        try {
            s.table().store(c, null, 0);
        } finally {
            c.lock.unlock();
        }
    }

    /** The original is overwritten after the copies; every stored chunk must still read as at take. */
    private static void assertStoredChunksHoldTheTakeTimeBytes(Setup s) throws IOException {
        byte[] later = new byte[(int) CAPACITY];
        new Random(8).nextBytes(later);
        s.original().write(ByteBuffer.wrap(later), 0);
        for (long i = 0; i < s.geometry().chunkCount(); i++) {
            Chunk c = s.table().existing(i);
            int n = s.geometry().chunkBytes(i);
            ByteBuffer got = ByteBuffer.allocate(n);
            c.lock.lock();
            try {
                assertThat(c.state).isEqualTo(Chunk.State.STORED);
                s.table().readStored(c, got, 0, 0, n);
            } finally {
                c.lock.unlock();
            }
            int from = (int) s.geometry().chunkStart(i);
            assertThat(got.array()).as("chunk %d", i).isEqualTo(java.util.Arrays.copyOfRange(s.takeTime(), from, from + n));
        }
    }

    @Test
    void onOneFilesystemTheKernelCopiesEveryChunkAndTheyHoldTheTakeTimeBytes() throws Exception {
        Setup s = setup(dir, NativeIo.system());
        storeAll(s);
        assertThat(s.table().chunksCopied()).isEqualTo(9);
        assertThat(s.table().chunksCopiedInKernel()).as("copied by copy_file_range, the short last chunk too").isEqualTo(9);
        assertThat(s.table().existing(3).buffer).as("no buffer of ours held the bytes").isNull();
        assertStoredChunksHoldTheTakeTimeBytes(s);
    }

    @Test
    void aRefusalFallsBackToTheBufferForGoodAndLosesNothing() throws Exception {
        int[] calls = {0};
        NativeIo refusing = new NativeIo() {
            @Override
            public int open(Path path, boolean write) {
                throw new UnsupportedOperationException();
            }

            @Override
            public void close(int handle) {
            }

            @Override
            public void preallocate(int handle, long offsetBytes, long lengthBytes) {
            }

            @Override
            public void punchHole(int handle, long offsetBytes, long lengthBytes) {
            }

            @Override
            public long seekData(int handle, long offsetBytes) {
                return offsetBytes;
            }

            @Override
            public long seekHole(int handle, long offsetBytes) {
                return offsetBytes;
            }

            @Override
            public long copyFileRange(int from, long fromOffsetBytes, int to, long toOffsetBytes, long lengthBytes) {
                calls[0]++;
                throw new UnsupportedOperationException("copy_file_range: errno 18");
            }

            @Override
            public boolean available() {
                return true;
            }
        };
        Setup s = setup(dir, refusing);
        storeAll(s);
        assertThat(calls[0]).as("asked once, then never again").isEqualTo(1);
        assertThat(s.table().chunksCopied()).isEqualTo(9);
        assertThat(s.table().chunksCopiedInKernel()).isZero();
        assertStoredChunksHoldTheTakeTimeBytes(s);
    }

    @Test
    void acrossFilesystemsOfDifferentKindsTheChunksStillHoldTheTakeTimeBytes() throws Exception {
        Path shm = Path.of("/dev/shm");
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.isDirectory(shm) && Files.isWritable(shm), "no /dev/shm");
        Path other = Files.createTempDirectory(shm, "blksnap-kernelcopy-");
        open.add(() -> {
            try (var files = Files.list(other)) {
                for (Path p : files.toList()) {
                    Files.deleteIfExists(p);
                }
            }
            Files.deleteIfExists(other);
        });
        Setup s = setup(other, NativeIo.system());
        storeAll(s);
        assertThat(s.table().chunksCopied()).isEqualTo(9);
        assertThat(s.table().chunksCopiedInKernel()).as("tmpfs to the temp directory's filesystem: all in the kernel, or none")
                .isIn(0L, 9L);
        assertStoredChunksHoldTheTakeTimeBytes(s);
    }

    @Test
    void manyThreadsCopyingDistinctChunksAtOnceEachGetTheirOwnBytes() throws Exception {
        Setup s = setup(dir, NativeIo.system());
        try (ExecutorService pool = Executors.newFixedThreadPool(8)) {
            List<Future<?>> all = new ArrayList<>();
            for (long i = 0; i < s.geometry().chunkCount(); i++) {
                long index = i;
                all.add(pool.submit(() -> {
                    store(s, index);
                    return null;
                }));
            }
            for (Future<?> f : all) {
                f.get();
            }
        }
        assertThat(s.table().chunksCopiedInKernel()).isEqualTo(9);
        assertStoredChunksHoldTheTakeTimeBytes(s);
    }
}
