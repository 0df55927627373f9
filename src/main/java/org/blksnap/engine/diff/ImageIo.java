package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;

/**
 * Reads and writes of one device's snapshot image (the kernel's {@code diff_area_image_io}).
 *
 * <p>Reads: a run of chunks that are not done is read straight from the original, without a lock,
 * then the done bits are checked again: a chunk still not done cannot have been written since take
 * (every write copies it first and sets the bit before writing), so the bytes read were take-time
 * data; a chunk that became done meanwhile is read again from its region. Done chunks are read under
 * the chunk lock. Writes: the first write to a chunk copies its take-time content into a region with
 * the new data applied; later ones write through to the region. The original is never written.
 *
 * <p>Sends ({@link #send}, for a server that lets the kernel send file pages): the same protocol, with
 * the bytes handed to a {@link BlockDevice.ByteSink}. Chunks not done are read into the sink's buffer
 * and checked exactly as a read checks them, never handed as pages of the original (see
 * {@link #send}); a done chunk not in the chunk cache is handed as a range of its region.
 *
 * <p>Thread-safe. Errors: {@link BlksnapException} EIO once the area or the snapshot is corrupted
 * (checked before and, for reads and sends, after the transfer) or for a failed chunk; a failed first write
 * of a chunk corrupts the area. Other failures of the original or the storage are thrown as they
 * come ({@link IOException}) and corrupt nothing.
 */
final class ImageIo {
    private final String device;
    private final ChunkGeometry geometry;
    private final DoneBitmap done;
    private final ChunkTable table;
    private final BlockDevice original;
    private final AreaState state;

    ImageIo(String device, ChunkGeometry geometry, DoneBitmap done, ChunkTable table, BlockDevice original,
            AreaState state) {
        this.device = device;
        this.geometry = geometry;
        this.done = done;
        this.table = table;
        this.original = original;
        this.state = state;
    }

    /** Fills {@code dst} with the image from {@code offsetBytes}; dst's position advances by what was read. */
    void read(ByteBuffer dst, long offsetBytes) throws IOException {
        state.checkUsable();
        int startPos = dst.position();
        long end = offsetBytes + dst.remaining();
        long pos = offsetBytes;
        while (pos < end) {
            long idx = geometry.chunkIndex(pos);
            if (!done.isDone(idx)) {
                pos = readNotDoneRun(idx, pos, end, dst, startPos + (int) (pos - offsetBytes));
            } else {
                long e = Math.min(end, geometry.chunkStart(idx + 1));
                readDone(idx, dst, startPos + (int) (pos - offsetBytes), pos, (int) (e - pos));
                pos = e;
            }
        }
        dst.position(startPos + (int) (end - offsetBytes));
        // A copy that failed meanwhile may have let new data reach the original under us.
        state.checkUsable();
    }

    /**
     * Hands the image's {@code [offsetBytes, offsetBytes+lengthBytes)} to {@code sink}, in order, each
     * byte once, with the checks and errors of {@link #read}.
     *
     * <p>A run of chunks not done is read from the original into the sink's scratch buffer and never
     * handed as a range of the original's file: sendfile to a socket (TCP; AF_UNIX with
     * MSG_SPLICE_PAGES on Linux 6.x) hands page references, and the bytes are read when the receiver
     * copies them, after a later write to the live device may have changed them. The protocol of the
     * class comment needs the bytes in our memory: read them, check the done bits again and re-read
     * chunks that became done from their region, check the area is usable (a failed copy lets new data
     * reach the original), and only then hand them. Pieces of cached chunks are copied into the same
     * buffer under the chunk lock; consecutive pieces in the buffer go out in one {@code bytes} call.
     *
     * <p>A done chunk that is not cached is handed as a range of its region ({@code sink.file}), so the
     * kernel sends the storage file's pages. That is safe for a copied chunk: the original's later
     * writes never touch the storage (copy-on-write wrote the region once, before the original
     * changed); image writes to the chunk write its region under the chunk lock, taken here to see the
     * chunk STORED and get its region, and a client's read concurrent with its own overlapping image
     * write reads undefined content anyway (NBD does not order requests in flight); and a region is
     * never handed to another chunk while the snapshot lives. The region is sent after the lock is
     * released: sendfile reads the pages when the receiver takes them, so holding the lock would order
     * nothing, and a client that stops reading would keep other clients' reads and writes of the chunk
     * waiting for its reply timeout.
     *
     * @throws BlksnapException EIO once the area or the snapshot is corrupted (checked before and after),
     *                          or for a failed chunk; part of the range may have been handed by then
     * @throws IOException      a read of the original or of the storage failed, or the sink failed
     */
    void send(long offsetBytes, int lengthBytes, BlockDevice.ByteSink sink) throws IOException {
        state.checkUsable();
        long end = offsetBytes + lengthBytes;
        long pos = offsetBytes;
        long held = offsetBytes; // [held, pos) is in the scratch buffer, not handed yet
        ByteBuffer scratch = null;
        while (pos < end) {
            long idx = geometry.chunkIndex(pos);
            if (!done.isDone(idx)) {
                if (scratch == null) {
                    scratch = sink.scratch();
                }
                pos = readNotDoneRun(idx, pos, end, scratch, (int) (pos - offsetBytes));
                continue;
            }
            long e = Math.min(end, geometry.chunkStart(idx + 1));
            int length = (int) (e - pos);
            Chunk c = existingDone(idx);
            Region uncached = null; // the region to hand, when the chunk has no buffer
            c.lock.lock();
            try {
                if (c.state != Chunk.State.STORED) {
                    throw new BlksnapException(Errno.EIO, device + ": chunk " + idx + " failed");
                }
                if (c.buffer == null) {
                    uncached = c.region;
                } else {
                    if (scratch == null) {
                        scratch = sink.scratch();
                    }
                    table.readStored(c, scratch, (int) (pos - offsetBytes), geometry.offsetInChunk(pos), length);
                }
            } finally {
                c.lock.unlock();
            }
            if (uncached != null) {
                handHeld(sink, scratch, offsetBytes, held, pos);
                uncached.send(sink, geometry.offsetInChunk(pos), length);
                held = e;
            }
            pos = e;
        }
        handHeld(sink, scratch, offsetBytes, held, end);
        // After the transfer, as a read checks (the bytes handed from the original were checked before
        // they went, by handHeld).
        state.checkUsable();
    }

    /**
     * Hands the image bytes {@code [from, to)}, held in {@code scratch} (which starts at image offset
     * {@code base}), once the area is seen usable after they were read: a copy that failed meanwhile
     * may have let new data reach the original under them. Nothing if the range is empty.
     */
    private void handHeld(BlockDevice.ByteSink sink, ByteBuffer scratch, long base, long from, long to)
            throws IOException {
        if (from == to) {
            return;
        }
        state.checkUsable();
        sink.bytes(scratch.duplicate().limit((int) (to - base)).position((int) (from - base)));
    }

    /** The descriptor of done chunk {@code idx}; destroy may have released it (then ENODEV). */
    private Chunk existingDone(long idx) {
        Chunk c = table.existing(idx);
        if (c == null) {
            state.checkUsable(); // released by destroy meanwhile
            throw new IllegalStateException(device + ": chunk " + idx + " is done but has no descriptor");
        }
        return c;
    }

    /**
     * Reads the run of chunks not done that starts at device offset {@code pos} (in chunk
     * {@code idx}) and ends before {@code end} or at the next done chunk into {@code dst} at
     * {@code dstPos}, by the lock-free protocol of the class comment: from the original, then every
     * chunk of the run that became done meanwhile again from its region (shared by read and send).
     *
     * @return the device offset where the run ends (bytes)
     */
    private long readNotDoneRun(long idx, long pos, long end, ByteBuffer dst, int dstPos) throws IOException {
        long runEnd = pos;
        long j = idx;
        while (runEnd < end && !done.isDone(j)) {
            runEnd = Math.min(end, geometry.chunkStart(j + 1));
            j++;
        }
        original.read(dst.duplicate().limit(dstPos + (int) (runEnd - pos)).position(dstPos), pos);
        for (long k = idx; k < j; k++) {
            if (done.isDone(k)) {
                long s = Math.max(pos, geometry.chunkStart(k));
                long e = Math.min(runEnd, geometry.chunkStart(k + 1));
                readDone(k, dst, dstPos + (int) (s - pos), s, (int) (e - s));
            }
        }
        return runEnd;
    }

    /** Copies {@code lengthBytes} at device offset {@code offsetBytes} of a done chunk into dst at {@code dstPos}. */
    private void readDone(long idx, ByteBuffer dst, int dstPos, long offsetBytes, int lengthBytes) throws IOException {
        Chunk c = existingDone(idx);
        c.lock.lock();
        try {
            if (c.state != Chunk.State.STORED) {
                throw new BlksnapException(Errno.EIO, device + ": chunk " + idx + " failed");
            }
            table.readStored(c, dst, dstPos, geometry.offsetInChunk(offsetBytes), lengthBytes);
        } finally {
            c.lock.unlock();
        }
    }

    /** Writes all of {@code src} to the image at {@code offsetBytes}; src's position advances to its limit. */
    void write(ByteBuffer src, long offsetBytes) throws IOException {
        state.checkUsable();
        long end = offsetBytes + src.remaining();
        long pos = offsetBytes;
        int base = src.position();
        while (pos < end) {
            long idx = geometry.chunkIndex(pos);
            long e = Math.min(end, geometry.chunkStart(idx + 1));
            int from = base + (int) (pos - offsetBytes);
            ByteBuffer piece = src.duplicate().limit(from + (int) (e - pos)).position(from);
            writeChunk(table.chunk(idx), piece, geometry.offsetInChunk(pos));
            pos = e;
        }
        src.position(base + (int) (end - offsetBytes));
    }

    /** Writes {@code piece} into chunk {@code c} at {@code offsetInChunk}: copies the chunk first if it is NEW. */
    private void writeChunk(Chunk c, ByteBuffer piece, int offsetInChunk) throws IOException {
        Exception failure = null;
        AreaState.Report report = null;
        c.lock.lock();
        try {
            state.checkUsable();
            switch (c.state) {
                case STORED -> table.writeStored(c, piece, offsetInChunk);
                case FAILED -> throw new BlksnapException(Errno.EIO, device + ": chunk " + c.index + " failed");
                case NEW -> {
                    try {
                        table.store(c, piece, offsetInChunk);
                    } catch (IOException | RuntimeException e) {
                        table.fail(c);
                        report = state.declareChunkFailed(c.index, e);
                        failure = e;
                    }
                }
            }
        } finally {
            c.lock.unlock();
        }
        if (failure == null) {
            return;
        }
        state.report(report);
        if (failure instanceof BlksnapException b) {
            throw new BlksnapException(Errno.EIO, device + ": image write failed: " + b.getMessage(), b);
        }
        if (failure instanceof IOException io) {
            throw io;
        }
        throw (RuntimeException) failure;
    }
}
