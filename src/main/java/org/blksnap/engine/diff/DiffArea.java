package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Params;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

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
 */
public final class DiffArea implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(DiffArea.class);

    /** What the diff area reports to: its snapshot. */
    public interface Owner {
        /** A device's copy failed with {@code errno}; called once per device. */
        void deviceCorrupted(String device, Errno errno, String message);

        /** The errno that corrupted the snapshot, or null while it is intact. */
        Errno corruption();
    }

    private final String device;
    private final BlockDevice original;
    private final ChunkGeometry geometry;
    private final DiffStorage storage;
    private final Owner owner;
    private final DoneBitmap done;
    private final ConcurrentHashMap<Long, Chunk> chunks = new ConcurrentHashMap<>();
    private final DiffBufferPool pool;
    private final ChunkCache cache;
    private final ImageAllocationMap allocation;
    private final AtomicLong chunksCopied = new AtomicLong();
    private volatile Errno corrupted;
    private volatile boolean closed;

    /**
     * @param device   device name, for messages and events
     * @param original the unfiltered backing device (the engine's reads bypass the tracker)
     * @param values   parameters read at take (chunk geometry)
     * @param live     live parameters (cache and pool limits are read at each use)
     */
    public DiffArea(String device, BlockDevice original, ParamValues values, Params live, DiffStorage storage, Owner owner) {
        this.device = device;
        this.original = original;
        this.geometry = ChunkGeometry.of(original.sizeBytes(), original.minimumIoBytes(), values);
        this.storage = storage;
        this.owner = owner;
        this.done = new DoneBitmap(geometry.chunkCount());
        this.pool = new DiffBufferPool(geometry.chunkSizeBytes(), () -> live.values().freeDiffBufferPoolSize());
        this.cache = new ChunkCache(() -> live.values().chunkMaximumInCache(), pool);
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
        return chunksCopied.get();
    }

    /** The errno that corrupted this device's diff area, or null. */
    public Errno corruption() {
        return corrupted;
    }

    // ---- copy-on-write ---------------------------------------------------------------------

    /**
     * Stores the take-time content of every chunk that {@code [offsetBytes, offsetBytes+lengthBytes)}
     * touches and that is not stored yet. Returns when it is safe to write the range to the original.
     * Never throws for a copy failure: the snapshot is marked corrupted instead.
     */
    public void copyOnWrite(long offsetBytes, long lengthBytes) {
        if (lengthBytes <= 0 || corrupted != null || closed) {
            return;
        }
        long first = geometry.chunkIndex(offsetBytes);
        long last = geometry.chunkIndex(offsetBytes + lengthBytes - 1);
        for (long i = first; i <= last; i++) {
            if (done.isDone(i)) {
                continue;
            }
            Errno snapshotError = owner.corruption();
            if (snapshotError != null) {
                markCorrupted(snapshotError, "snapshot is corrupted");
                return;
            }
            Chunk c = chunks.computeIfAbsent(i, Chunk::new);
            c.lock.lock();
            try {
                if (c.state != Chunk.State.NEW) {
                    continue;
                }
                if (corrupted != null || closed) {
                    return;
                }
                store(c, null, 0);
            } catch (BlksnapException e) {
                fail(c, e.errno(), e.getMessage());
                return;
            } catch (IOException | RuntimeException e) {
                fail(c, Errno.EIO, e.getMessage());
                return;
            } finally {
                c.lock.unlock();
            }
        }
    }

    /**
     * Under the chunk lock, for a NEW chunk: loads its take-time content from the original, applies
     * {@code imageData} at {@code offsetInChunk} if given, and writes the whole chunk to a new region.
     */
    private void store(Chunk c, ByteBuffer imageData, int offsetInChunk) throws IOException {
        int n = geometry.chunkBytes(c.index);
        ByteBuffer buf = c.buffer != null ? c.buffer : pool.acquire();
        try {
            buf.clear().limit(n);
            original.read(buf, geometry.chunkStart(c.index));
            if (imageData != null) {
                buf.clear().position(offsetInChunk);
                buf.put(imageData);
            }
            Region region = storage.allocate(geometry.chunkSectors());
            buf.clear().limit(n);
            region.write(buf, 0);
            c.region = region;
            c.state = Chunk.State.STORED;
            c.buffer = buf;
            done.markDone(c.index);
            chunksCopied.incrementAndGet();
        } catch (IOException | RuntimeException e) {
            if (c.buffer != buf) {
                pool.release(buf);
            }
            throw e;
        }
        cache.touch(c);
    }

    /** Under the chunk lock: the chunk failed; the snapshot is corrupted. */
    private void fail(Chunk c, Errno errno, String message) {
        c.state = Chunk.State.FAILED;
        c.region = null;
        if (c.buffer != null) {
            cache.remove(c);
            pool.release(c.buffer);
            c.buffer = null;
        }
        done.markDone(c.index);
        markCorrupted(errno, "chunk " + c.index + ": " + message);
    }

    private synchronized void markCorrupted(Errno errno, String message) {
        if (corrupted != null) {
            return;
        }
        corrupted = errno;
        LOG.warn("{}: snapshot copy-on-write failed ({}): {}", device, errno, message);
        cache.clear();
        owner.deviceCorrupted(device, errno, message);
    }

    // ---- image I/O -------------------------------------------------------------------------

    private void checkUsable() {
        if (closed) {
            throw new BlksnapException(Errno.ENODEV, device + ": the snapshot was destroyed");
        }
        Errno e = owner.corruption();
        if (e == null) {
            e = corrupted;
        }
        if (e != null) {
            throw new BlksnapException(Errno.EIO, device + ": the snapshot is corrupted (" + e + ")");
        }
    }

    /**
     * Reads the image: the device as it was at take. Chunks never copied are read straight from the
     * original, without a lock: a chunk found still not copied after the read cannot have been written
     * since take (writes copy first), so the read was take-time data; otherwise it is read again from
     * the storage.
     *
     * @throws BlksnapException EIO once the snapshot is corrupted, ENODEV once destroyed
     */
    public void imageRead(ByteBuffer dst, long offsetBytes) throws IOException {
        try {
            readImage(dst, offsetBytes);
        } catch (IOException | RuntimeException e) {
            if (closed) {
                throw destroyedDuring(e);
            }
            throw e;
        }
    }

    /**
     * I/O that raced with {@link #close()} fails as destroyed (ENODEV), not with whatever the
     * teardown broke under it (chunks gone, storage channels closed).
     */
    private BlksnapException destroyedDuring(Exception e) {
        if (e instanceof BlksnapException b && b.errno() == Errno.ENODEV) {
            return b;
        }
        return new BlksnapException(Errno.ENODEV, device + ": the snapshot was destroyed during image I/O", e);
    }

    private void readImage(ByteBuffer dst, long offsetBytes) throws IOException {
        checkUsable();
        int startPos = dst.position();
        long end = offsetBytes + dst.remaining();
        long pos = offsetBytes;
        while (pos < end) {
            long idx = geometry.chunkIndex(pos);
            if (!done.isDone(idx)) {
                long runEnd = pos;
                long j = idx;
                while (runEnd < end && !done.isDone(j)) {
                    runEnd = Math.min(end, geometry.chunkStart(j + 1));
                    j++;
                }
                int from = startPos + (int) (pos - offsetBytes);
                ByteBuffer slice = dst.duplicate().limit(from + (int) (runEnd - pos)).position(from);
                original.read(slice, pos);
                for (long k = idx; k < j; k++) {
                    if (done.isDone(k)) {
                        long s = Math.max(pos, geometry.chunkStart(k));
                        long e = Math.min(runEnd, geometry.chunkStart(k + 1));
                        readStored(k, dst, startPos + (int) (s - offsetBytes), s, (int) (e - s));
                    }
                }
                pos = runEnd;
            } else {
                long e = Math.min(end, geometry.chunkStart(idx + 1));
                readStored(idx, dst, startPos + (int) (pos - offsetBytes), pos, (int) (e - pos));
                pos = e;
            }
        }
        dst.position(startPos + (int) (end - offsetBytes));
        // A copy that failed meanwhile may have let new data reach the original under us.
        checkUsable();
    }

    /** Copies {@code length} bytes at device offset {@code offsetBytes} of a done chunk into dst at {@code dstPos}. */
    private void readStored(long idx, ByteBuffer dst, int dstPos, long offsetBytes, int length) throws IOException {
        Chunk c = chunks.get(idx);
        if (c == null) {
            checkUsable(); // released by destroy meanwhile
            throw new IllegalStateException(device + ": chunk " + idx + " is done but has no descriptor");
        }
        c.lock.lock();
        try {
            if (c.state != Chunk.State.STORED) {
                throw new BlksnapException(Errno.EIO, device + ": chunk " + idx + " failed");
            }
            int inChunk = geometry.offsetInChunk(offsetBytes);
            if (c.buffer == null) {
                // Read just the piece asked for: loading the whole chunk into the cache made every
                // random 4 KiB image read cost a 256 KiB read (JMH imageRead4kCopied: 26.8 us).
                // Re-reads are the storage file's page cache's business.
                c.region.read(dst.duplicate().limit(dstPos + length).position(dstPos), inChunk);
                return;
            }
            dst.put(dstPos, c.buffer, inChunk, length);
            cache.touch(c);
        } finally {
            c.lock.unlock();
        }
    }

    /**
     * Writes to the image: the data lands in the difference storage, never on the original. The first
     * write to a chunk copies its take-time content into a region first.
     *
     * @throws BlksnapException EIO once the snapshot is corrupted (a write that overflows the storage
     *                          corrupts it), ENODEV once destroyed
     */
    public void imageWrite(ByteBuffer src, long offsetBytes) throws IOException {
        try {
            writeImage(src, offsetBytes);
        } catch (IOException | RuntimeException e) {
            if (closed) {
                throw destroyedDuring(e);
            }
            throw e;
        }
    }

    private void writeImage(ByteBuffer src, long offsetBytes) throws IOException {
        checkUsable();
        long end = offsetBytes + src.remaining();
        long pos = offsetBytes;
        int base = src.position();
        while (pos < end) {
            long idx = geometry.chunkIndex(pos);
            long e = Math.min(end, geometry.chunkStart(idx + 1));
            int from = base + (int) (pos - offsetBytes);
            ByteBuffer piece = src.duplicate().limit(from + (int) (e - pos)).position(from);
            int inChunk = geometry.offsetInChunk(pos);
            Chunk c = chunks.computeIfAbsent(idx, Chunk::new);
            c.lock.lock();
            try {
                checkUsable();
                switch (c.state) {
                    case NEW -> {
                        try {
                            store(c, piece, inChunk);
                        } catch (BlksnapException ex) {
                            fail(c, ex.errno(), ex.getMessage());
                            throw new BlksnapException(Errno.EIO, device + ": image write failed: " + ex.getMessage(), ex);
                        } catch (IOException | RuntimeException ex) {
                            fail(c, Errno.EIO, ex.getMessage());
                            throw ex;
                        }
                    }
                    case STORED -> {
                        c.region.write(piece.duplicate(), inChunk);
                        if (c.buffer != null) {
                            c.buffer.put(inChunk, piece, piece.position(), piece.remaining());
                            cache.touch(c);
                        }
                    }
                    case FAILED -> throw new BlksnapException(Errno.EIO, device + ": chunk " + idx + " failed");
                }
            } finally {
                c.lock.unlock();
            }
            pos = e;
        }
        src.position(base + (int) (end - offsetBytes));
    }

    /**
     * Allocation of the image: chunks not yet copied report the original's allocation; copied ones
     * are data. A chunk copied while the original was being asked is reported as data.
     */
    public void imageMapAllocation(long offsetBytes, long lengthBytes, BlockDevice.ExtentSink sink) throws IOException {
        checkUsable();
        allocation.map(offsetBytes, lengthBytes, sink);
    }

    /** Flushes the storage (image FLUSH). */
    public void flush() throws IOException {
        checkUsable();
        storage.force();
    }

    /** Releases chunk buffers and descriptors; image-written data is simply dropped. */
    @Override
    public void close() {
        closed = true;
        cache.clear();
        pool.clear();
        chunks.clear();
    }
}
