package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import org.blksnap.engine.BlockDevice;

/**
 * Positional I/O of the difference storage: loops until the buffer is drained and names the file,
 * offset and length in every error. The engine's own storage I/O goes straight to the storage
 * files and never through a tracker.
 */
final class DiffIo {
    /**
     * A test seam: asked before every storage read (a range handed to a sink for sending included),
     * write and flush, it may fail the operation. It is null in production, where it costs one static
     * volatile read per storage I/O. Set by tests only (through the test helper {@code StorageFaults});
     * it must be thread-safe.
     */
    static volatile Fault fault;

    /** Decides whether a storage operation fails. */
    @FunctionalInterface
    interface Fault {
        enum Op { READ, WRITE, FLUSH }

        /**
         * Returns to let the operation run, or throws the {@link IOException} it fails with (read and
         * write errors are then reported like real ones, naming file, offset and length).
         *
         * @param offsetBytes where in the file (0 for a flush)
         * @param lengthBytes how many bytes (0 for a flush)
         */
        void check(Op op, Path path, long offsetBytes, long lengthBytes) throws IOException;
    }

    private DiffIo() {
    }

    static void readFully(FileChannel channel, Path path, ByteBuffer dst, long offsetBytes) throws IOException {
        int length = dst.remaining();
        long pos = offsetBytes;
        try {
            check(Fault.Op.READ, path, offsetBytes, length);
            while (dst.hasRemaining()) {
                int n = channel.read(dst, pos);
                if (n < 0) {
                    throw new IOException("unexpected end of file");
                }
                pos += n;
            }
        } catch (IOException e) {
            throw new IOException("difference storage read of " + path + " at offset " + offsetBytes + " length "
                    + length + " failed: " + e.getMessage(), e);
        }
    }

    /**
     * Hands a range of a storage file to {@code sink} ({@link BlockDevice.ByteSink#file}): a read the
     * kernel makes while it sends. The fault seam is asked first, as for a read; what the sink throws
     * (the file or the socket failed during the send) is passed on as it is.
     */
    static void sendFully(FileChannel channel, Path path, BlockDevice.ByteSink sink, long offsetBytes, int lengthBytes)
            throws IOException {
        try {
            check(Fault.Op.READ, path, offsetBytes, lengthBytes);
        } catch (IOException e) {
            throw new IOException("difference storage read of " + path + " at offset " + offsetBytes + " length "
                    + lengthBytes + " failed: " + e.getMessage(), e);
        }
        sink.file(channel, offsetBytes, lengthBytes);
    }

    static void writeFully(FileChannel channel, Path path, ByteBuffer src, long offsetBytes) throws IOException {
        int length = src.remaining();
        long pos = offsetBytes;
        try {
            check(Fault.Op.WRITE, path, offsetBytes, length);
            while (src.hasRemaining()) {
                pos += channel.write(src, pos);
            }
        } catch (IOException e) {
            throw new IOException("difference storage write of " + path + " at offset " + offsetBytes + " length "
                    + length + " failed: " + e.getMessage(), e);
        }
    }

    /** Makes the file's written data durable (its metadata too is not needed: the size never changes). */
    static void force(FileChannel channel, Path path) throws IOException {
        check(Fault.Op.FLUSH, path, 0, 0);
        channel.force(false);
    }

    private static void check(Fault.Op op, Path path, long offsetBytes, long lengthBytes) throws IOException {
        Fault f = fault;
        if (f != null) {
            f.check(op, path, offsetBytes, lengthBytes);
        }
    }
}
