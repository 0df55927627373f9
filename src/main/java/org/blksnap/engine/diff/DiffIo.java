package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;

/**
 * Positional I/O of the difference storage: loops until the buffer is drained and names the file,
 * offset and length in every error. The engine's own storage I/O goes straight to the storage
 * files and never through a tracker.
 */
final class DiffIo {
    private DiffIo() {
    }

    static void readFully(FileChannel channel, Path path, ByteBuffer dst, long offsetBytes) throws IOException {
        int length = dst.remaining();
        long pos = offsetBytes;
        try {
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

    static void writeFully(FileChannel channel, Path path, ByteBuffer src, long offsetBytes) throws IOException {
        int length = src.remaining();
        long pos = offsetBytes;
        try {
            while (src.hasRemaining()) {
                pos += channel.write(src, pos);
            }
        } catch (IOException e) {
            throw new IOException("difference storage write of " + path + " at offset " + offsetBytes + " length "
                    + length + " failed: " + e.getMessage(), e);
        }
    }
}
