package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.device.NativeIo;

/**
 * The chunks of one diff area and what is done to one chunk under its lock (the kernel's
 * {@code chunk.c}): load the take-time content from the original, store it in a region of the
 * difference storage, read and write a stored chunk, give up on a failed one.
 *
 * <p>Descriptors exist only for chunks that were touched; the {@link DoneBitmap} says which chunks
 * need no copy any more. Thread-safe: the table is a concurrent map; every method that takes a
 * {@link Chunk} must be called with that chunk's lock held and says which state it expects.
 * Failures are thrown to the caller, which decides what they mean for the snapshot.
 */
final class ChunkTable {
    private final ChunkGeometry geometry;
    private final BlockDevice original;
    private final DiffStorage storage;
    private final DoneBitmap done;
    private final DiffBufferPool pool;
    private final ChunkCache cache;
    private final ConcurrentHashMap<Long, Chunk> chunks = new ConcurrentHashMap<>();
    private final AtomicLong chunksCopied = new AtomicLong();
    private final KernelCopy kernelCopy;

    /**
     * @param original the unfiltered original device: the take-time content of chunks not yet done
     * @param storage  where regions come from
     * @param done     set here when a chunk is stored or failed
     */
    ChunkTable(ChunkGeometry geometry, BlockDevice original, DiffStorage storage, DoneBitmap done, DiffBufferPool pool,
               ChunkCache cache) {
        this(geometry, original, storage, done, pool, cache, new KernelCopy(original.name(), NativeIo.system()));
    }

    /** As above, with the in-kernel copier given (tests). */
    ChunkTable(ChunkGeometry geometry, BlockDevice original, DiffStorage storage, DoneBitmap done, DiffBufferPool pool,
               ChunkCache cache, KernelCopy kernelCopy) {
        this.geometry = geometry;
        this.original = original;
        this.storage = storage;
        this.done = done;
        this.pool = pool;
        this.cache = cache;
        this.kernelCopy = kernelCopy;
    }

    /** The descriptor of chunk {@code index}, created NEW if there is none. */
    Chunk chunk(long index) {
        return chunks.computeIfAbsent(index, Chunk::new);
    }

    /** The descriptor of chunk {@code index}, or null (never touched, or released at close). */
    Chunk existing(long index) {
        return chunks.get(index);
    }

    /** Of {@link #chunksCopied}, those the kernel copied ({@link KernelCopy}). */
    long chunksCopiedInKernel() {
        return kernelCopy.copiedChunks();
    }

    /** Chunks whose take-time content was stored so far (by copy-on-write or image writes). */
    long chunksCopied() {
        return chunksCopied.get();
    }

    /**
     * For a NEW chunk: loads its take-time content from the original, applies {@code imageData} at
     * {@code offsetInChunk} if given, writes the whole chunk to a new region and marks it STORED and
     * done. On failure the chunk stays NEW, with no buffer taken. A plain copy-on-write (no
     * {@code imageData}) is done inside the kernel where it can be ({@link KernelCopy}); the chunk is
     * then not cached (image reads of it read its region, from the page cache).
     *
     * @throws IOException              a read of the original or a write of the storage failed
     * @throws org.blksnap.engine.BlksnapException ENOSPC the storage is full, ESRCH it was closed
     */
    void store(Chunk c, ByteBuffer imageData, int offsetInChunk) throws IOException {
        int n = geometry.chunkBytes(c.index);
        if (imageData == null && c.buffer == null && kernelCopy.mayTry(original)) {
            // copy-on-write: nothing to merge, so the kernel may copy it without a buffer of ours
            Region region = storage.allocate(geometry.chunkSectors());
            if (kernelCopy.copy(original, geometry.chunkStart(c.index), region, n)) {
                c.region = region;
                c.state = Chunk.State.STORED;
                done.markDone(c.index);
                chunksCopied.incrementAndGet();
                return;
            }
            storeThroughBuffer(c, null, 0, n, region);
            return;
        }
        storeThroughBuffer(c, imageData, offsetInChunk, n, null);
    }

    private void storeThroughBuffer(Chunk c, ByteBuffer imageData, int offsetInChunk, int n, Region allocated)
            throws IOException {
        ByteBuffer buf = c.buffer != null ? c.buffer : pool.acquire();
        try {
            buf.clear().limit(n);
            original.read(buf, geometry.chunkStart(c.index));
            if (imageData != null) {
                buf.clear().position(offsetInChunk);
                buf.put(imageData);
            }
            Region region = allocated != null ? allocated : storage.allocate(geometry.chunkSectors());
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

    /** The chunk's copy failed: it becomes FAILED and done (nothing will try it again), its buffer is released. */
    void fail(Chunk c) {
        c.state = Chunk.State.FAILED;
        c.region = null;
        if (c.buffer != null) {
            cache.remove(c);
            pool.release(c.buffer);
            c.buffer = null;
        }
        done.markDone(c.index);
    }

    /**
     * For a STORED chunk: copies {@code lengthBytes} from {@code offsetInChunk} into {@code dst} at
     * {@code dstPos} (dst's position does not move), from the cached buffer if there is one, else
     * from the region.
     */
    void readStored(Chunk c, ByteBuffer dst, int dstPos, int offsetInChunk, int lengthBytes) throws IOException {
        if (c.buffer == null) {
            // Read just the piece asked for: loading the whole chunk into the cache made every
            // random 4 KiB image read cost a 256 KiB read (JMH imageRead4kCopied: 26.8 us).
            // Re-reads are the storage file's page cache's business.
            c.region.read(dst.duplicate().limit(dstPos + lengthBytes).position(dstPos), offsetInChunk);
            return;
        }
        dst.put(dstPos, c.buffer, offsetInChunk, lengthBytes);
        cache.touch(c);
    }

    /** For a STORED chunk: writes {@code piece} (all of it; its position does not move) at {@code offsetInChunk}. */
    void writeStored(Chunk c, ByteBuffer piece, int offsetInChunk) throws IOException {
        c.region.write(piece.duplicate(), offsetInChunk);
        if (c.buffer != null) {
            c.buffer.put(offsetInChunk, piece, piece.position(), piece.remaining());
            cache.touch(c);
        }
    }

    /** Gives every cached buffer back (at corruption). */
    void dropBuffers() {
        cache.clear();
    }

    /** Releases buffers and descriptors (at destroy); image-written data is simply dropped. */
    void close() {
        cache.clear();
        pool.clear();
        chunks.clear();
    }
}
