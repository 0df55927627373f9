package org.blksnap.nbd;

import java.io.Closeable;
import java.io.IOException;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

/**
 * The byte stream of one NBD connection: a socket in production, a pair of pipes in the
 * in-memory protocol tests. Reads come from the connection's reader thread only; gathering
 * writes are serialized by {@link ReplyWriter}.
 */
interface NbdChannel extends Closeable {

    /** Reads some bytes; -1 at end of stream. */
    int read(ByteBuffer dst) throws IOException;

    /** Writes some of the buffers (gathering); returns the number of bytes written. */
    long write(ByteBuffer[] srcs, int offset, int length) throws IOException;

    /**
     * Stops further reads: a blocked or later {@link #read} returns -1 (or throws), while replies
     * can still be written. Best effort, never throws.
     */
    void shutdownInput();

    /** The peer, for log messages. */
    String describe();

    static NbdChannel of(SocketChannel socket, String description) {
        return new SocketNbdChannel(socket, description);
    }

    /** A connected {@link SocketChannel} (TCP or Unix domain), in blocking mode. */
    final class SocketNbdChannel implements NbdChannel {
        private final SocketChannel socket;
        private final String description;

        SocketNbdChannel(SocketChannel socket, String description) {
            this.socket = socket;
            this.description = description;
            try {
                if (socket.supportedOptions().contains(StandardSocketOptions.TCP_NODELAY)) {
                    socket.setOption(StandardSocketOptions.TCP_NODELAY, true);
                }
                socket.setOption(StandardSocketOptions.SO_RCVBUF, 4 << 20);
                socket.setOption(StandardSocketOptions.SO_SNDBUF, 4 << 20);
            } catch (IOException e) {
                // Only a latency hint; the connection works without it.
            }
        }

        @Override
        public int read(ByteBuffer dst) throws IOException {
            return socket.read(dst);
        }

        @Override
        public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
            return socket.write(srcs, offset, length);
        }

        @Override
        public void shutdownInput() {
            try {
                socket.shutdownInput();
            } catch (IOException e) {
                // Already closed or disconnected: reads end anyway.
            }
        }

        @Override
        public String describe() {
            return description;
        }

        @Override
        public void close() throws IOException {
            socket.close();
        }
    }
}
