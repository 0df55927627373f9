package org.blksnap.serve;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.ReentrantLock;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.device.BlockDevices;

/**
 * A writable view of a read-only device: writes go to a sparse temporary file of the device's size,
 * and a bitmap of {@link #BLOCK_BYTES} blocks says which blocks the file holds; every other block is
 * read from the base. The base (a backup point) is never written.
 *
 * <p>The file is unlinked as soon as it is open: it takes disk space only while the server runs and
 * is gone at exit however the process ends (even {@code kill -9}). Writes are not made durable
 * ({@link #flush} does nothing): the overlay is scratch space that dies with the server.
 *
 * <pre>
 *   block b written?  bitmap bit b (1 = the overlay file holds the whole block b)
 *   write, partial block not yet written: read b from the base, patch, write whole block, set bit
 *   write, whole block (or block already written): write to the file, set bit
 *   read: runs of written blocks from the file, the others from the base
 * </pre>
 *
 * <p>Thread-safe. A block's bit is set only after the file holds all of it, so a read sees the base
 * or the whole new block. Writers of a block are ordered by a striped lock (read-modify-write of a
 * partial block must not lose a concurrent write to the same block); readers take no lock.
 * Memory: one bit per 4 KiB block (32 MiB for 1 TiB).
 */
final class Overlay implements BlockDevice {
    static final int BLOCK_BYTES = 4096;
    private static final int STRIPES = 256;

    private final BlockDevice base;
    private final BlockDevice file;
    private final AtomicLongArray written;
    private final ReentrantLock[] stripes = new ReentrantLock[STRIPES];
    private final long blockCount;

    private Overlay(BlockDevice base, BlockDevice file) {
        this.base = base;
        this.file = file;
        this.blockCount = blockIndex(base.sizeBytes() - 1) + 1;
        this.written = new AtomicLongArray((int) ((blockCount + 63) / 64));
        for (int i = 0; i < STRIPES; i++) {
            stripes[i] = new ReentrantLock();
        }
    }

    /**
     * An overlay over {@code base} in a new sparse file in {@code dir} (unlinked at once).
     *
     * @throws IOException the file cannot be created or opened (message names it)
     */
    static Overlay create(BlockDevice base, Path dir, String label) throws IOException {
        if (base.sizeBytes() / BLOCK_BYTES >= (long) Integer.MAX_VALUE * 64) {
            throw new IOException(base.name() + ": " + base.sizeBytes() + " bytes is too large for an overlay");
        }
        Path path = Files.createTempFile(dir, "overlay-" + label.replaceAll("[^0-9A-Za-z._-]", "_") + "-", ".img");
        Files.delete(path);
        BlockDevice file = BlockDevices.open(path, base.sizeBytes(), false);
        try {
            Files.delete(path);
        } catch (IOException e) {
            file.close();
            throw new IOException("cannot unlink the overlay " + path + ": " + e.getMessage(), e);
        }
        return new Overlay(base, file);
    }

    static long blockIndex(long offsetBytes) {
        return offsetBytes / BLOCK_BYTES;
    }

    static long blockOffsetBytes(long blockIndex) {
        return blockIndex * BLOCK_BYTES;
    }

    boolean isWritten(long block) {
        return (written.get((int) (block >>> 6)) & (1L << (block & 63))) != 0;
    }

    private void markWritten(long block) {
        written.getAndUpdate((int) (block >>> 6), w -> w | (1L << (block & 63)));
    }

    /** Blocks the overlay holds (for the stats line and the tests). */
    long writtenBlocks() {
        long n = 0;
        for (int i = 0; i < written.length(); i++) {
            n += Long.bitCount(written.get(i));
        }
        return n;
    }

    /** The end of the run of blocks from {@code fromBytes} that are all written or all not, at most {@code toBytes}. */
    private long runEnd(long fromBytes, long toBytes) {
        boolean inFile = isWritten(blockIndex(fromBytes));
        long end = Math.min(toBytes, blockOffsetBytes(blockIndex(fromBytes) + 1));
        while (end < toBytes && isWritten(blockIndex(end)) == inFile) {
            end = Math.min(toBytes, end + BLOCK_BYTES);
        }
        return end;
    }

    @Override
    public String name() {
        return base.name();
    }

    @Override
    public long sizeBytes() {
        return base.sizeBytes();
    }

    @Override
    public int logicalBlockSize() {
        return base.logicalBlockSize();
    }

    @Override
    public int minimumIoBytes() {
        return BLOCK_BYTES;
    }

    @Override
    public void read(ByteBuffer dst, long offsetBytes) throws IOException {
        int length = dst.remaining();
        checkRange(offsetBytes, length);
        int start = dst.position();
        long end = offsetBytes + length;
        long pos = offsetBytes;
        while (pos < end) {
            boolean inFile = isWritten(blockIndex(pos));
            long runEnd = runEnd(pos, end);
            ByteBuffer part = dst.slice(start + (int) (pos - offsetBytes), (int) (runEnd - pos));
            (inFile ? file : base).read(part, pos);
            pos = runEnd;
        }
        dst.position(start + length);
    }

    @Override
    public void write(ByteBuffer src, long offsetBytes) throws IOException {
        int length = src.remaining();
        checkRange(offsetBytes, length);
        if (length == 0) {
            return;
        }
        int start = src.position();
        long end = offsetBytes + length;
        withBlocksLocked(offsetBytes, end, () -> {
            long pos = offsetBytes;
            while (pos < end) {
                long block = blockIndex(pos);
                long blockStart = blockOffsetBytes(block);
                long blockEnd = Math.min(sizeBytes(), blockStart + BLOCK_BYTES);
                ByteBuffer piece;
                long pieceEnd;
                if ((pos > blockStart || end < blockEnd) && !isWritten(block)) {
                    // a partial block the file does not hold yet: the rest of it comes from the base
                    ByteBuffer whole = ByteBuffer.allocate((int) (blockEnd - blockStart));
                    base.read(whole, blockStart);
                    pieceEnd = Math.min(end, blockEnd);
                    whole.put((int) (pos - blockStart), src, start + (int) (pos - offsetBytes), (int) (pieceEnd - pos));
                    file.write(whole.clear(), blockStart);
                    markWritten(block);
                } else {
                    // whole blocks, or blocks the file holds: written as they are, in one call per run
                    pieceEnd = pos;
                    while (pieceEnd < end) {
                        long b = blockIndex(pieceEnd);
                        long bStart = blockOffsetBytes(b);
                        long bEnd = Math.min(sizeBytes(), bStart + BLOCK_BYTES);
                        if ((pieceEnd > bStart || end < bEnd) && !isWritten(b)) {
                            break;
                        }
                        pieceEnd = Math.min(end, bEnd);
                    }
                    piece = src.slice(start + (int) (pos - offsetBytes), (int) (pieceEnd - pos));
                    file.write(piece, pos);
                    for (long b = block; b <= blockIndex(pieceEnd - 1); b++) {
                        markWritten(b);
                    }
                }
                pos = pieceEnd;
            }
        });
        src.position(start + length);
    }

    @Override
    public void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) throws IOException {
        checkRange(offsetBytes, lengthBytes);
        if (lengthBytes == 0) {
            return;
        }
        long end = offsetBytes + lengthBytes;
        long wholeStart = blockOffsetBytes(blockIndex(offsetBytes + BLOCK_BYTES - 1));
        long wholeEnd = end == sizeBytes() ? end : blockOffsetBytes(blockIndex(end));
        if (wholeStart >= wholeEnd) {
            writeZeroBytes(offsetBytes, end);
            return;
        }
        writeZeroBytes(offsetBytes, wholeStart);
        withBlocksLocked(wholeStart, wholeEnd, () -> {
            file.writeZeroes(wholeStart, wholeEnd - wholeStart, true);
            for (long b = blockIndex(wholeStart); b <= blockIndex(wholeEnd - 1); b++) {
                markWritten(b);
            }
        });
        writeZeroBytes(wholeEnd, end);
    }

    private void writeZeroBytes(long from, long to) throws IOException {
        if (to > from) {
            write(ByteBuffer.allocate((int) (to - from)), from);
        }
    }

    /** Discarded blocks read as zeros afterwards (the base's content must not show through). */
    @Override
    public void discard(long offsetBytes, long lengthBytes) throws IOException {
        writeZeroes(offsetBytes, lengthBytes, true);
    }

    @Override
    public boolean fastZeroes() {
        return true;
    }

    /** Nothing to make durable: the overlay dies with the server. */
    @Override
    public void flush() {
    }

    /** The base's holes, less the blocks the overlay holds; the overlay's blocks are data. */
    @Override
    public void mapAllocation(long offsetBytes, long lengthBytes, ExtentSink sink) throws IOException {
        checkRange(offsetBytes, lengthBytes);
        Merger out = new Merger(sink);
        long[] pos = {offsetBytes};
        base.mapAllocation(offsetBytes, lengthBytes, (len, hole) -> {
            long from = pos[0];
            long to = Math.min(sizeBytes(), from + len);
            pos[0] = to;
            if (!hole) {
                return out.add(to - from, false);
            }
            long p = from;
            while (p < to) {
                long runEnd = runEnd(p, to);
                if (!out.add(runEnd - p, !isWritten(blockIndex(p)))) {
                    return false;
                }
                p = runEnd;
            }
            return pos[0] < offsetBytes + lengthBytes;
        });
        out.finish();
    }

    /** Merges neighbouring extents of the same kind before they reach the sink. */
    private static final class Merger {
        private final ExtentSink sink;
        private long length;
        private boolean hole;
        private boolean stopped;

        Merger(ExtentSink sink) {
            this.sink = sink;
        }

        boolean add(long len, boolean isHole) {
            if (stopped) {
                return false;
            }
            if (length > 0 && isHole != hole) {
                if (!sink.extent(length, hole)) {
                    stopped = true;
                    return false;
                }
                length = 0;
            }
            hole = isHole;
            length += len;
            return true;
        }

        void finish() {
            if (!stopped && length > 0) {
                sink.extent(length, hole);
            }
        }
    }

    @FunctionalInterface
    private interface IoAction {
        void run() throws IOException;
    }

    /** Runs {@code action} holding the stripes of the blocks of {@code [from, to)}, taken in stripe order. */
    private void withBlocksLocked(long from, long to, IoAction action) throws IOException {
        long first = blockIndex(from);
        long last = blockIndex(to - 1);
        boolean[] take = new boolean[STRIPES];
        if (last - first + 1 >= STRIPES) {
            java.util.Arrays.fill(take, true);
        } else {
            for (long b = first; b <= last; b++) {
                take[(int) (b % STRIPES)] = true;
            }
        }
        int locked = 0;
        try {
            for (; locked < STRIPES; locked++) {
                if (take[locked]) {
                    stripes[locked].lock();
                }
            }
            action.run();
        } finally {
            for (int i = locked - 1; i >= 0; i--) {
                if (take[i]) {
                    stripes[i].unlock();
                }
            }
        }
    }

    /** Closes the file (already unlinked: its space is freed now); the base belongs to the caller. */
    @Override
    public void close() throws IOException {
        file.close();
    }
}
