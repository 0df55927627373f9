package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Params;

/**
 * The chunk table of one device in one taken snapshot: copy-on-write for writes to the original,
 * and the read and write paths of the device's snapshot image.
 *
 * <p>Guarantee: before new data of a write reaches a chunk of the original for the first time since
 * take, the chunk's take-time content is on stable difference storage, or the chunk already holds
 * image-written data, or the snapshot has been declared corrupted. Each chunk is copied at most
 * once; concurrent writes to one chunk wait for that one copy; later writes cost one bit test.
 * Reads of the original never wait.
 *
 * <p>Memory: a bit per chunk ("done": stored or failed) and a {@link Chunk} object only for chunks
 * that were copied or written through the image, so an idle snapshot of a huge device costs little.
 *
 * <p>Thread-safe. Errors of the copy (storage full, I/O) never reach the writer: they mark the
 * snapshot corrupted through {@link Owner}, with an event. Image I/O fails with EIO once the snapshot
 * is corrupted.
 *
 * <p>The parts, along the kernel's seams: {@link ChunkGeometry} (chunk size and count),
 * {@link DoneBitmap}, {@link ChunkTable} ({@code chunk.c}: one chunk's load, store and failure),
 * {@link AreaState} (corrupted, first errno wins; closed), {@link ImageIo} and
 * {@link ImageAllocationMap} (the image). The owner is told of a corruption with no lock held.
 */
public final class DiffArea implements AutoCloseable {

    /** What the diff area reports to: its snapshot. */
    public interface Owner {
        /** A device's copy failed with {@code errno}; called once per device, with no diff-area lock held. */
        void deviceCorrupted(String device, Errno errno, String message);

        /** The errno that corrupted the snapshot, or null while it is intact. */
        Errno corruption();

        /**
         * A copy-on-write stored one chunk of {@code bytes} in {@code nanos} (the time the writer
         * waited for it); called on the writer's thread with no diff-area lock held.
         */
        default void chunkCopied(String device, int bytes, long nanos) {
        }
    }

    private final String device;
    private final DiffStorage storage;
    private final ChunkGeometry geometry;
    private final DoneBitmap done;
    private final ChunkTable table;
    private final AreaState state;
    private final ImageIo image;
    private final ImageAllocationMap allocation;
    private final Owner owner;

    /**
     * @param device   device name, for messages and events
     * @param original the unfiltered backing device (the engine's reads bypass the tracker)
     * @param values   parameters read at take (chunk geometry)
     * @param live     live parameters (cache and pool limits are read at each use)
     */
    public DiffArea(String device, BlockDevice original, ParamValues values, Params live, DiffStorage storage, Owner owner) {
        this.device = device;
        this.storage = storage;
        this.owner = owner;
        this.geometry = ChunkGeometry.of(original.sizeBytes(), original.minimumIoBytes(), values);
        this.done = new DoneBitmap(geometry.chunkCount());
        DiffBufferPool pool = new DiffBufferPool(geometry.chunkSizeBytes(), () -> live.values().freeDiffBufferPoolSize());
        ChunkCache cache = new ChunkCache(() -> live.values().chunkMaximumInCache(), pool);
        this.table = new ChunkTable(geometry, original, storage, done, pool, cache);
        this.state = new AreaState(device, owner, table::dropBuffers);
        this.image = new ImageIo(device, geometry, done, table, original, state);
        this.allocation = new ImageAllocationMap(geometry, done, original);
    }

    public String device() {
        return device;
    }

    public int chunkShift() {
        return geometry.chunkShift();
    }

    public int chunkSizeBytes() {
        return geometry.chunkSizeBytes();
    }

    public long chunkCount() {
        return geometry.chunkCount();
    }

    public long capacityBytes() {
        return geometry.capacityBytes();
    }

    /** Chunks whose take-time content was stored so far (by copy-on-write or image writes). */
    public long chunksCopied() {
        return table.chunksCopied();
    }

    /** The errno that corrupted this device's diff area, or null. */
    public Errno corruption() {
        return state.corruption();
    }

    // ---- copy-on-write ---------------------------------------------------------------------

    /**
     * Stores the take-time content of every chunk that {@code [offsetBytes, offsetBytes+lengthBytes)}
     * touches and that is not stored yet. Returns when it is safe to write the range to the original.
     * Never throws for a copy failure: the snapshot is marked corrupted instead.
     */
    public void copyOnWrite(long offsetBytes, long lengthBytes) {
        if (lengthBytes <= 0 || state.stopped()) {
            return;
        }
        long first = geometry.chunkIndex(offsetBytes);
        long last = geometry.chunkIndex(offsetBytes + lengthBytes - 1);
        for (long i = first; i <= last; i++) {
            if (done.isDone(i)) {
                continue;
            }
            Errno snapshotError = state.snapshotCorruption();
            if (snapshotError != null) {
                state.markCorrupted(snapshotError, "snapshot is corrupted");
                return;
            }
            if (!copy(table.chunk(i))) {
                return;
            }
        }
    }

    /**
     * Copies one chunk if it is still NEW. A failure marks the chunk failed and declares the area
     * corrupted before the chunk lock is released; the owner is told after.
     *
     * @return false when copy-on-write must stop: the area is corrupted or closed
     */
    private boolean copy(Chunk c) {
        AreaState.Report report = null;
        boolean stored = false;
        long startNanos = System.nanoTime();
        c.lock.lock();
        try {
            if (c.state != Chunk.State.NEW) {
                return true;
            }
            if (state.stopped()) {
                return false;
            }
            table.store(c, null, 0);
            stored = true;
        } catch (IOException | RuntimeException e) {
            table.fail(c);
            report = state.declareChunkFailed(c.index, e);
        } finally {
            c.lock.unlock();
        }
        if (stored) {
            owner.chunkCopied(device, geometry.chunkBytes(c.index), System.nanoTime() - startNanos);
            return true;
        }
        state.report(report);
        return false;
    }

    // ---- image I/O -------------------------------------------------------------------------

    /**
     * Reads the image: the device as it was at take (see {@link ImageIo}).
     *
     * @throws BlksnapException EIO once the snapshot is corrupted, ENODEV once destroyed
     * @throws IOException      a read of the original or of the storage failed (the snapshot stays intact)
     */
    public void imageRead(ByteBuffer dst, long offsetBytes) throws IOException {
        try {
            image.read(dst, offsetBytes);
        } catch (IOException | RuntimeException e) {
            if (state.isClosed()) {
                throw state.destroyedDuring(e);
            }
            throw e;
        }
    }

    /**
     * Hands the image's {@code [offsetBytes, offsetBytes+lengthBytes)} to {@code sink}: the bytes a
     * {@link #imageRead} would give, with copied chunks as ranges of the difference storage the kernel
     * may send by itself and the rest as bytes read into the sink's buffer (see {@link ImageIo#send}).
     *
     * @throws BlksnapException EIO once the snapshot is corrupted, ENODEV once destroyed; part of the
     *                          range may have been handed
     * @throws IOException      a read of the original or of the storage failed (the snapshot stays
     *                          intact), or the sink failed
     */
    public void imageSend(long offsetBytes, int lengthBytes, BlockDevice.ByteSink sink) throws IOException {
        try {
            image.send(offsetBytes, lengthBytes, sink);
        } catch (IOException | RuntimeException e) {
            if (state.isClosed()) {
                throw state.destroyedDuring(e);
            }
            throw e;
        }
    }

    /**
     * Writes to the image: the data lands in the difference storage, never on the original. The first
     * write to a chunk copies its take-time content into a region first.
     *
     * @throws BlksnapException EIO once the snapshot is corrupted (a write that overflows the storage
     *                          corrupts it), ENODEV once destroyed
     * @throws IOException      the first write to a chunk failed to copy it (the snapshot is then
     *                          corrupted), or a write to a stored chunk failed (its range is undefined)
     */
    public void imageWrite(ByteBuffer src, long offsetBytes) throws IOException {
        try {
            image.write(src, offsetBytes);
        } catch (IOException | RuntimeException e) {
            if (state.isClosed()) {
                throw state.destroyedDuring(e);
            }
            throw e;
        }
    }

    /**
     * Allocation of the image: chunks not yet copied report the original's allocation; copied ones
     * are data. A chunk copied while the original was being asked is reported as data.
     */
    public void imageMapAllocation(long offsetBytes, long lengthBytes, BlockDevice.ExtentSink sink) throws IOException {
        state.checkUsable();
        allocation.map(offsetBytes, lengthBytes, sink);
    }

    /** Flushes the storage (image FLUSH). */
    public void flush() throws IOException {
        state.checkUsable();
        storage.force();
    }

    /** Releases chunk buffers and descriptors; image-written data is simply dropped. */
    @Override
    public void close() {
        state.close();
        table.close();
    }
}
