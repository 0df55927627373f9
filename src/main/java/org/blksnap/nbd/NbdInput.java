package org.blksnap.nbd;

import java.io.EOFException;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Buffered reads of a connection, so that a 28-byte request header costs one read syscall and
 * pipelined requests arriving together cost one syscall for all of them. Used by the reader
 * thread only.
 */
final class NbdInput {
    static final int BUFFER_BYTES = 64 * 1024;
    /** Payloads from this size on are read by a platform thread (see {@link #readOnPlatformThread}). */
    static final int LARGE_READ_BYTES = 256 * 1024;
    /**
     * Platform threads for large payload reads, shared by all connections: at most one per connection
     * is busy at a time (its reader waits for it), and idle ones end after a minute by themselves.
     */
    private static final ExecutorService LARGE_READS =
            Executors.newCachedThreadPool(Thread.ofPlatform().daemon().name("nbd-payload-", 0).factory());

    /** Runs before a read that may block (the connection flushes its batched replies there). */
    interface BeforeRead {
        void run() throws IOException;
    }

    private final NbdChannel channel;
    private BeforeRead beforeRead = () -> { };
    private Runnable received = () -> { };
    /** Unread bytes are between position and limit. */
    private final ByteBuffer buffer;

    /**
     * @param buffer where input is buffered, owned by the caller (a connection's {@link ConnectionMemory}, or a
     *               small heap buffer for a connection that is only refused); at most {@link #BUFFER_BYTES}
     */
    NbdInput(NbdChannel channel, ByteBuffer buffer) {
        this.channel = channel;
        this.buffer = buffer.clear().flip();
    }

    void beforeRead(BeforeRead hook) {
        this.beforeRead = hook;
    }

    /**
     * Runs after a read that had to wait brought bytes but not yet all that were asked for (the
     * connection arms its request deadline there: the client has started a request).
     */
    void onPartialInput(Runnable hook) {
        this.received = hook;
    }

    /** Bytes received but not consumed yet. */
    int buffered() {
        return buffer.remaining();
    }

    /**
     * Makes at least {@code bytes} (at most the buffer's capacity) available and returns the buffer
     * with its position at the first of them; the caller consumes them by advancing the position.
     *
     * @throws EOFException if the stream ends first
     */
    ByteBuffer require(int bytes) throws IOException {
        if (buffer.remaining() >= bytes) {
            return buffer;
        }
        if (bytes > buffer.capacity()) {
            throw new IllegalArgumentException("bytes (" + bytes + ") must be <= " + buffer.capacity());
        }
        beforeRead.run();
        buffer.compact();
        try {
            while (buffer.position() < bytes) {
                if (channel.read(buffer) < 0) {
                    throw new EOFException("end of stream from " + channel.describe() + " with "
                            + buffer.position() + " of " + bytes + " bytes received");
                }
                if (buffer.position() > 0 && buffer.position() < bytes) {
                    received.run();
                }
            }
        } finally {
            buffer.flip();
        }
        return buffer;
    }

    /**
     * Hands out the bytes received but not consumed, and forgets them (at STARTTLS they belong to the
     * TLS handshake, not to this plaintext buffer).
     */
    ByteBuffer takeBuffered() {
        ByteBuffer rest = ByteBuffer.allocate(buffer.remaining()).put(buffer).flip();
        buffer.clear().flip();
        return rest;
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
        if (dst.hasRemaining()) {
            beforeRead.run();
        }
        if (dst.remaining() >= LARGE_READ_BYTES && Thread.currentThread().isVirtual()) {
            readOnPlatformThread(dst);
            return;
        }
        readLoop(dst);
    }

    private void readLoop(ByteBuffer dst) throws IOException {
        while (dst.hasRemaining()) {
            if (channel.read(dst) < 0) {
                throw new EOFException("end of stream from " + channel.describe() + " with "
                        + dst.remaining() + " bytes of data missing");
            }
        }
    }

    /**
     * A large payload arrives in pieces of the client's socket send buffer (~208 KiB on a Unix
     * socket); a virtual thread parks on the JDK's poller for each piece, a platform thread waits in
     * the kernel. One hand-off per request instead of a poller round trip per piece.
     */
    private void readOnPlatformThread(ByteBuffer dst) throws IOException {
        Future<?> f = LARGE_READS.submit(() -> {
            readLoop(dst);
            return null;
        });
        try {
            f.get();
        } catch (ExecutionException e) {
            if (e.getCause() instanceof IOException io) {
                throw io;
            }
            throw new IOException("payload read from " + channel.describe() + " failed: " + e.getCause(), e.getCause());
        } catch (InterruptedException e) {
            f.cancel(true);
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted while reading a payload from " + channel.describe());
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
