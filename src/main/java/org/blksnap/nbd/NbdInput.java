package org.blksnap.nbd;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Buffered reads of a connection, so that a 28-byte request header costs one read syscall and
 * pipelined requests arriving together cost one syscall for all of them. Used by the reader
 * thread only.
 */
final class NbdInput {
    static final int BUFFER_BYTES = 64 * 1024;

    private final NbdChannel channel;
    /** Unread bytes are between position and limit. */
    private final ByteBuffer buffer;

    NbdInput(NbdChannel channel) {
        this.channel = channel;
        this.buffer = ByteBuffer.allocateDirect(BUFFER_BYTES);
        this.buffer.flip();
    }

    /** Bytes received but not consumed yet. */
    int buffered() {
        return buffer.remaining();
    }

    /**
     * Makes at least {@code bytes} (at most {@link #BUFFER_BYTES}) available and returns the buffer
     * with its position at the first of them; the caller consumes them by advancing the position.
     *
     * @throws EOFException if the stream ends first
     */
    ByteBuffer require(int bytes) throws IOException {
        if (buffer.remaining() >= bytes) {
            return buffer;
        }
        if (bytes > BUFFER_BYTES) {
            throw new IllegalArgumentException("bytes (" + bytes + ") must be <= " + BUFFER_BYTES);
        }
        buffer.compact();
        try {
            while (buffer.position() < bytes) {
                if (channel.read(buffer) < 0) {
                    throw new EOFException("end of stream from " + channel.describe() + " with "
                            + buffer.position() + " of " + bytes + " bytes received");
                }
            }
        } finally {
            buffer.flip();
        }
        return buffer;
    }

    int readInt() throws IOException {
        return require(Integer.BYTES).getInt();
    }

    /** Reads exactly {@code bytes} (at most {@link NbdHandshakeDescriptor#MAX_OPTION_BYTES}) into a new heap buffer. */
    ByteBuffer readBytes(int bytes) throws IOException {
        ByteBuffer dst = ByteBuffer.allocate(bytes);
        readFully(dst);
        return dst.flip();
    }

    /** Fills {@code dst} completely: first from the buffer, then straight from the channel. */
    void readFully(ByteBuffer dst) throws IOException {
        int fromBuffer = Math.min(buffer.remaining(), dst.remaining());
        if (fromBuffer > 0) {
            ByteBuffer part = buffer.slice(buffer.position(), fromBuffer);
            dst.put(part);
            buffer.position(buffer.position() + fromBuffer);
        }
        while (dst.hasRemaining()) {
            if (channel.read(dst) < 0) {
                throw new EOFException("end of stream from " + channel.describe() + " with "
                        + dst.remaining() + " bytes of data missing");
            }
        }
    }

    /** Discards exactly {@code bytes} bytes of input without allocating. */
    void skip(long bytes) throws IOException {
        long left = bytes;
        while (left > 0) {
            if (!buffer.hasRemaining()) {
                require(1);
            }
            int n = (int) Math.min(left, buffer.remaining());
            buffer.position(buffer.position() + n);
            left -= n;
        }
    }
}
