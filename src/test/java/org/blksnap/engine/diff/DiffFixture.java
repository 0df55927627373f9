package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.device.NativeIo;
import org.blksnap.engine.event.EventQueue;
import org.blksnap.engine.testing.FaultyDevice;

/**
 * The parts of one diff area over files in a test's directory: an original (a {@link FaultyDevice}
 * filled with a known pattern), a difference storage, and the chunk table, state, image paths and
 * allocation map wired as {@link DiffArea} wires them. Not thread-safe to build; the parts are.
 */
final class DiffFixture implements AutoCloseable {
    final byte[] takeTime;
    final FaultyDevice original;
    final Path storagePath;
    final DiffStorage storage;
    final ChunkGeometry geometry;
    final DoneBitmap done;
    final DiffBufferPool pool;
    final ChunkCache cache;
    final ChunkTable table;
    final RecordingOwner owner = new RecordingOwner();
    final AreaState state;
    final ImageIo image;

    /**
     * @param capacityBytes original size
     * @param chunkShift    log2 chunk size
     * @param storageBytes  storage appended
     * @param cachedChunks  chunk_maximum_in_cache
     */
    DiffFixture(Path dir, long capacityBytes, int chunkShift, long storageBytes, int cachedChunks) throws IOException {
        takeTime = pattern(1, (int) capacityBytes);
        original = new FaultyDevice(BlockDevices.open(dir.resolve("orig.img"), capacityBytes, false));
        original.write(ByteBuffer.wrap(takeTime), 0);
        storagePath = dir.resolve("diff.img").toAbsolutePath().normalize();
        storage = new DiffStorage("s", new EventQueue("s"), 64, NativeIo.system());
        storage.append(StorageSpec.create(storagePath, storageBytes), p -> false);
        geometry = new ChunkGeometry(capacityBytes, chunkShift);
        done = new DoneBitmap(geometry.chunkCount());
        pool = new DiffBufferPool(geometry.chunkSizeBytes(), () -> 4);
        cache = new ChunkCache(() -> cachedChunks, pool);
        table = new ChunkTable(geometry, original, storage, done, pool, cache);
        state = new AreaState("orig", owner, table::dropBuffers);
        image = new ImageIo("orig", geometry, done, table, original, state);
    }

    /** The take-time bytes of {@code [offsetBytes, offsetBytes + lengthBytes)}. */
    byte[] takeTime(long offsetBytes, int lengthBytes) {
        return Arrays.copyOfRange(takeTime, (int) offsetBytes, (int) offsetBytes + lengthBytes);
    }

    /** The original's bytes now, read through its fault plan. */
    byte[] original(long offsetBytes, int lengthBytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(lengthBytes);
        original.read(b, offsetBytes);
        return b.array();
    }

    void writeOriginal(long offsetBytes, byte[] data) throws IOException {
        original.write(ByteBuffer.wrap(data), offsetBytes);
    }

    byte[] readImage(long offsetBytes, int lengthBytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(lengthBytes);
        image.read(b, offsetBytes);
        return b.array();
    }

    /** Copies chunk {@code index} as copy-on-write does. */
    void store(long index) throws IOException {
        Chunk c = table.chunk(index);
        c.lock.lock();
        try {
            table.store(c, null, 0);
        } finally {
            c.lock.unlock();
        }
    }

    static byte[] pattern(long seed, int lengthBytes) {
        byte[] b = new byte[lengthBytes];
        new SplittableRandom(seed).nextBytes(b);
        return b;
    }

    @Override
    public void close() throws IOException {
        StorageFaults.forget(storagePath);
        table.close();
        storage.close();
        original.close();
    }
}
