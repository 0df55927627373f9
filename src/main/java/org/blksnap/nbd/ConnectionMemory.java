package org.blksnap.nbd;

import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The native memory one connection owns: its input buffer and reply header area from the start
 * ({@link #HANDSHAKE_BYTES}), and its reply batch once it enters transmission ({@link #MAX_BYTES}
 * in all). Everything lives in one shared {@link Arena}, which {@link #close()} frees at once, so
 * a connection's memory goes back to the system when the connection ends, whatever the garbage
 * collector does: a daemon with a nearly empty heap may see no collection for hours, and direct
 * {@code ByteBuffer}s are only freed by one.
 *
 * <p>Owned by one connection: created before its thread starts, closed once by that thread when it
 * ends (on every path). The arena is shared because request threads write replies through the
 * header area and the batch; {@link ReplyWriter#close()} must run first, so that no thread is inside
 * a write on these buffers. {@code live} counts the bytes of every open {@code ConnectionMemory} of a
 * server. The JVM does not count arena memory against {@code -XX:MaxDirectMemorySize}: the server's
 * connection limit bounds it.
 */
final class ConnectionMemory implements AutoCloseable {
    /** Bytes held while the connection is in option haggling: input buffer plus reply headers. */
    static final long HANDSHAKE_BYTES = NbdInput.BUFFER_BYTES + ReplyWriter.HEADER_AREA_BYTES;
    /** Bytes held in transmission: the above plus the reply batch. */
    static final long MAX_BYTES = HANDSHAKE_BYTES + ReplyWriter.BATCH_BYTES;

    private final Arena arena = Arena.ofShared();
    private final AtomicLong live;
    private final ByteBuffer input;
    private final ByteBuffer headers;
    private long heldBytes;
    private boolean closed;

    /**
     * Allocates the handshake buffers.
     *
     * @throws OutOfMemoryError when the system has no memory left (nothing stays allocated)
     */
    ConnectionMemory(AtomicLong live) {
        this.live = live;
        try {
            input = allocate(NbdInput.BUFFER_BYTES);
            headers = allocate(ReplyWriter.HEADER_AREA_BYTES);
        } catch (RuntimeException | Error e) {
            close();
            throw e;
        }
    }

    private ByteBuffer allocate(int bytes) {
        ByteBuffer b = arena.allocate(bytes, Long.BYTES).asByteBuffer();
        heldBytes += bytes;
        live.addAndGet(bytes);
        return b;
    }

    /** The input buffer of {@link NbdInput#BUFFER_BYTES}. */
    ByteBuffer input() {
        return input;
    }

    /** The reply header area of {@link ReplyWriter#HEADER_AREA_BYTES}. */
    ByteBuffer headers() {
        return headers;
    }

    /**
     * A reply batch of {@link ReplyWriter#BATCH_BYTES}, allocated by the connection thread when
     * transmission starts.
     *
     * @throws OutOfMemoryError when the system has no memory left
     */
    ByteBuffer allocateBatch() {
        return allocate(ReplyWriter.BATCH_BYTES);
    }

    /** Frees every buffer; idempotent. None of them may be used afterwards. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        arena.close();
        live.addAndGet(-heldBytes);
    }
}
