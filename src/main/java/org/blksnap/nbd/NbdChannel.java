package org.blksnap.nbd;

import java.io.Closeable;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.SocketChannel;
import javax.security.auth.x500.X500Principal;
import jdk.net.ExtendedSocketOptions;
import jdk.net.UnixDomainPrincipal;

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

    /** Whether {@link #sendFile} works here: a plain socket (not TLS, not the tests' pipes). */
    default boolean canSendFiles() {
        return false;
    }

    /**
     * Sends {@code lengthBytes} of {@code src} from {@code positionBytes}, letting the kernel move
     * them (sendfile: no copy through user memory); bytes past the file's end go out as zeros. Only
     * where {@link #canSendFiles()}. Serialized by {@link ReplyWriter} like {@link #write}.
     *
     * @throws FileReadFailure when reading the file failed; the stream is in sync up to
     *                         {@link FileReadFailure#sentBytes()} of the data
     * @throws IOException     when the socket failed (the stream may hold part of the data)
     */
    default void sendFile(FileChannel src, long positionBytes, long lengthBytes) throws IOException {
        throw new UnsupportedOperationException("cannot send files on " + describe());
    }

    /** Reading the file failed during {@link #sendFile}, after {@code sentBytes} of the data went out. */
    final class FileReadFailure extends IOException {
        private final long sentBytes;

        FileReadFailure(long sentBytes, IOException cause) {
            super(cause.getMessage(), cause);
            this.sentBytes = sentBytes;
        }

        long sentBytes() {
            return sentBytes;
        }
    }

    /**
     * Whether the client runs on this host (a Unix socket, or TCP from a loopback or this host's own
     * address), so that it reads what the kernel hands it out of this host's memory; for
     * {@link LargeReadPath}. Best effort: false when the addresses cannot be read.
     */
    default boolean clientOnThisHost() {
        return false;
    }

    /** The peer, for log messages. */
    String describe();

    /**
     * Switches the stream to TLS (after the server's ACK to {@code NBD_OPT_STARTTLS}) and runs the
     * TLS handshake; from then on {@link #read} and {@link #write} carry plaintext through it.
     * Called once, by the reader thread, before any other thread writes.
     *
     * @param received bytes the reader already took from the stream after the STARTTLS option (the
     *                 start of the client's handshake, if it did not wait for the ACK)
     * @throws IOException when the handshake fails or the peer goes away; the connection must end
     */
    default void startTls(NbdTls tls, ByteBuffer received) throws IOException {
        throw new IOException("TLS is not available on " + describe());
    }

    /** The TLS protocol version and cipher suite once TLS is on, else null; for log lines. */
    default String tlsDescription() {
        return null;
    }

    /** Who is at the other end (address or Unix credentials, and the verified TLS subject once TLS is on). */
    default NbdClient client() {
        return NbdClient.UNKNOWN;
    }

    static NbdChannel of(SocketChannel socket, String description) {
        return new SocketNbdChannel(socket, description);
    }

    /**
     * A connected {@link SocketChannel} (TCP or Unix domain), in blocking mode. Plain reads and
     * writes go straight to the socket; after {@link #startTls} through a {@link TlsLayer}.
     */
    final class SocketNbdChannel implements NbdChannel {
        /** What {@link #sendFile} copies through memory when the kernel cannot send at once. */
        private static final int SEND_PIECE_BYTES = 16 * 1024;

        private final SocketChannel socket;
        private final String description;
        /** Null while plain; set once by the reader thread before request threads exist. */
        private volatile TlsLayer tls;

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
            TlsLayer t = tls;
            return t == null ? socket.read(dst) : t.read(dst);
        }

        @Override
        public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
            TlsLayer t = tls;
            return t == null ? socket.write(srcs, offset, length) : t.write(srcs, offset, length);
        }

        @Override
        public boolean canSendFiles() {
            return tls == null;
        }

        @Override
        public boolean clientOnThisHost() {
            try {
                SocketAddress peer = socket.getRemoteAddress();
                if (peer instanceof InetSocketAddress remote) {
                    return remote.getAddress().isLoopbackAddress()
                            || socket.getLocalAddress() instanceof InetSocketAddress local
                            && remote.getAddress().equals(local.getAddress());
                }
                return peer != null; // a Unix domain socket
            } catch (IOException e) {
                return false;
            }
        }

        @Override
        public void sendFile(FileChannel src, long positionBytes, long lengthBytes) throws IOException {
            long sent = 0;
            ByteBuffer piece = null;
            while (sent < lengthBytes) {
                long n;
                try {
                    n = src.transferTo(positionBytes + sent, lengthBytes - sent, socket);
                } catch (IOException e) {
                    n = 0; // the copy below tells a failed file read from a failed socket
                }
                if (n > 0) {
                    sent += n;
                    continue;
                }
                // Nothing went: the socket is full (under virtual threads its descriptor is non-blocking,
                // so sendfile does not wait), the file ended, or the transfer failed. One piece through
                // memory waits for room, reads zeros past the end, or says which side failed.
                if (piece == null) {
                    piece = ByteBuffer.allocate(SEND_PIECE_BYTES);
                }
                int length = (int) Math.min(piece.capacity(), lengthBytes - sent);
                piece.clear().limit(length);
                try {
                    readPiece(src, piece, positionBytes + sent);
                } catch (IOException e) {
                    throw new FileReadFailure(sent, e);
                }
                while (piece.hasRemaining()) {
                    socket.write(piece);
                }
                sent += length;
            }
        }

        private static void readPiece(FileChannel src, ByteBuffer piece, long positionBytes) throws IOException {
            while (piece.hasRemaining()) {
                if (src.read(piece, positionBytes + piece.position()) < 0) {
                    while (piece.hasRemaining()) {
                        piece.put((byte) 0);
                    }
                }
            }
            piece.flip();
        }

        @Override
        public void startTls(NbdTls settings, ByteBuffer received) throws IOException {
            if (tls != null) {
                throw new IllegalStateException("TLS is already on for " + description);
            }
            TlsLayer t = settings.newLayer(socket, received);
            tls = t; // so that close() sends close_notify even if the handshake fails half-way
            t.handshake();
        }

        @Override
        public String tlsDescription() {
            TlsLayer t = tls;
            return t == null ? null : t.describe();
        }

        @Override
        public NbdClient client() {
            TlsLayer t = tls;
            X500Principal subject = t == null ? null : t.peerSubject();
            String identity = t == null ? null : t.pskIdentity();
            try {
                if (socket.getRemoteAddress() instanceof InetSocketAddress inet) {
                    return new NbdClient(inet.getAddress(), null, null, t != null, subject, identity);
                }
                UnixDomainPrincipal p = socket.getOption(ExtendedSocketOptions.SO_PEERCRED);
                return new NbdClient(null, p.user().getName(), p.group().getName(), t != null, subject, identity);
            } catch (IOException | UnsupportedOperationException e) {
                return new NbdClient(null, null, null, t != null, subject, identity);
            }
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
            TlsLayer t = tls;
            if (t != null && socket.isOpen()) {
                t.closeQuietly();
            }
            socket.close();
        }
    }
}
