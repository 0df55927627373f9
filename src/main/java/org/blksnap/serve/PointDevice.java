package org.blksnap.serve;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import org.blksnap.backup.PointReader;
import org.blksnap.backup.RepositoryException;
import org.blksnap.engine.BlockDevice;

/**
 * One point of a repository as a read-only block device: every read is served from the point's
 * chunks, fetched on demand through the shared {@link ChunkCache}; holes read as zeros and are
 * reported by {@link #mapAllocation} (so {@code NBD_CMD_BLOCK_STATUS} and sparse reads see them).
 * A read spanning several chunks loads them in parallel on virtual threads; sequential reads are
 * read ahead ({@link ReadAhead}).
 *
 * <p>A chunk that is damaged or missing fails the read with an {@link IOException} (the client gets
 * {@code NBD_EIO}) naming the point and the chunk, and a rate-limited log line; never wrong data.
 *
 * <p>Thread-safe. Writes, discards and zeroing throw {@link IOException} (the export is read-only,
 * the server refuses them before they get here).
 */
final class PointDevice implements BlockDevice {
    private static final byte[] ZEROS = new byte[64 << 10];
    private final String name;
    private final PointReader reader;
    private final ExecutorService executor;
    private final ReadAhead readAhead;
    private final ServeLogs logs;

    PointDevice(String name, PointReader reader, ExecutorService executor, ReadAhead readAhead, ServeLogs logs) {
        this.name = name;
        this.reader = reader;
        this.executor = executor;
        this.readAhead = readAhead;
        this.logs = logs;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public long sizeBytes() {
        return reader.sizeBytes();
    }

    @Override
    public int logicalBlockSize() {
        return 512;
    }

    @Override
    public int minimumIoBytes() {
        return 4096;
    }

    ReadAhead readAhead() {
        return readAhead;
    }

    @Override
    public void read(ByteBuffer dst, long offsetBytes) throws IOException {
        int length = dst.remaining();
        checkRange(offsetBytes, length);
        if (length == 0) {
            return;
        }
        readAhead.onRead(offsetBytes, length);
        int first = reader.chunkIndex(offsetBytes);
        int last = reader.chunkIndex(offsetBytes + length - 1);
        List<Future<byte[]>> rest = new ArrayList<>(last - first);
        try {
            for (int c = first + 1; c <= last; c++) {
                int chunk = c;
                rest.add(executor.submit(() -> reader.readChunk(chunk)));
            }
            int base = dst.position();
            copy(dst, base, length, offsetBytes, first, reader.readChunk(first));
            for (int i = 0; i < rest.size(); i++) {
                copy(dst, base, length, offsetBytes, first + 1 + i, rest.get(i).get());
            }
            dst.position(base + length);
        } catch (RepositoryException e) {
            throw failed(e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RepositoryException r) {
                throw failed(r);
            }
            throw new IOException(name + ": read at offset " + offsetBytes + " length " + length + " failed: " + e.getCause(),
                    e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(name + ": read at offset " + offsetBytes + " length " + length + " interrupted", e);
        } finally {
            for (Future<byte[]> f : rest) {
                f.cancel(false);
            }
        }
    }

    /**
     * Copies the part of chunk {@code chunk} (null: zeros) that the read of {@code length} bytes at
     * {@code readOffsetBytes} covers into {@code dst} from {@code base}, by absolute puts.
     */
    private void copy(ByteBuffer dst, int base, int length, long readOffsetBytes, int chunk, byte[] data) {
        long chunkStart = reader.chunkOffsetBytes(chunk);
        long from = Math.max(readOffsetBytes, chunkStart);
        long to = Math.min(readOffsetBytes + length, chunkStart + reader.chunkLengthBytes(chunk));
        int dstPos = base + (int) (from - readOffsetBytes);
        int n = (int) (to - from);
        if (data == null) {
            for (int done = 0; done < n; done += ZEROS.length) {
                dst.put(dstPos + done, ZEROS, 0, Math.min(ZEROS.length, n - done));
            }
        } else {
            dst.put(dstPos, data, (int) (from - chunkStart), n);
        }
    }

    private IOException failed(RepositoryException e) {
        logs.damaged(e);
        return new IOException(e.code() + ": " + e.getMessage(), e);
    }

    /** Holes (chunks stored nowhere) and data, chunk by chunk, merged into runs. */
    @Override
    public void mapAllocation(long offsetBytes, long lengthBytes, ExtentSink sink) throws IOException {
        checkRange(offsetBytes, lengthBytes);
        if (lengthBytes == 0) {
            return;
        }
        long end = offsetBytes + lengthBytes;
        long pos = offsetBytes;
        long runStart = offsetBytes;
        Boolean runHole = null; // the kind of the run being merged; null before the first chunk
        try {
            for (int c = reader.chunkIndex(offsetBytes); pos < end; c++) {
                boolean hole = reader.isHole(c);
                long chunkEnd = reader.chunkOffsetBytes(c) + reader.chunkLengthBytes(c);
                if (runHole != null && hole != runHole) {
                    if (!sink.extent(pos - runStart, runHole)) {
                        return;
                    }
                    runStart = pos;
                }
                runHole = hole;
                pos = chunkEnd;
            }
        } catch (RepositoryException e) {
            throw failed(e);
        }
        sink.extent(pos - runStart, runHole);
    }

    @Override
    public void write(ByteBuffer src, long offsetBytes) throws IOException {
        throw readOnly();
    }

    @Override
    public void flush() {
        // nothing is ever written
    }

    @Override
    public void discard(long offsetBytes, long lengthBytes) throws IOException {
        throw readOnly();
    }

    @Override
    public void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) throws IOException {
        throw readOnly();
    }

    private IOException readOnly() {
        return new IOException(name + " is a backup point: read-only (blksnap serve --writable adds an overlay)");
    }

    @Override
    public void close() {
        // the reader and the cache belong to the server
    }
}
