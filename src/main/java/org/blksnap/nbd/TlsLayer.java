package org.blksnap.nbd;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.time.Duration;
import javax.security.auth.x500.X500Principal;

/**
 * TLS over a connection's byte stream after {@code NBD_OPT_STARTTLS}, between the socket and the
 * connection's reads and writes: {@link JsseTlsLayer} for X.509 certificates (JSSE),
 * {@link PskTlsLayer} for pre-shared keys (Bouncy Castle's TLS API; JSSE has no PSK suites).
 *
 * <p>Threads: reads come from one thread at a time (the connection's reader, or the thread it hands
 * a large payload read to); writes may come from any thread and are serialized by the layer; a read
 * and a write may run at the same time.
 */
sealed interface TlsLayer permits JsseTlsLayer, PskTlsLayer {
    /** How long closing waits for the close_notify alert to leave. */
    Duration CLOSE_NOTIFY_WAIT = Duration.ofMillis(200);

    /**
     * Runs the TLS handshake to its end, before any other method.
     *
     * @throws IOException when the peer goes away or the handshake fails (a client certificate not
     *                     signed by the CA, an unknown PSK identity, a wrong key), with the reason;
     *                     {@link TlsRefusedException} when the server turned the client away
     */
    void handshake() throws IOException;

    /** Reads some plaintext; -1 once the peer closed (with or without close_notify). */
    int read(ByteBuffer dst) throws IOException;

    /** Encrypts and sends all of the buffers; returns the plaintext bytes sent. */
    long write(ByteBuffer[] srcs, int offset, int length) throws IOException;

    /**
     * Sends close_notify so that clients see a clean end of the session, waiting at most
     * {@link #CLOSE_NOTIFY_WAIT} for room in the socket buffer (a client that stopped reading must not
     * hold the connection's end); skipped while another write is in progress. Never throws.
     */
    void closeQuietly();

    /** The subject of the client certificate that TLS verified, or null. */
    X500Principal peerSubject();

    /** The PSK identity the client proved it holds the key of, or null. */
    String pskIdentity();

    /** Protocol version and cipher suite, for log lines. */
    String describe();

    /**
     * Writes {@code bytes} (a close_notify) to {@code raw}, waiting at most {@link #CLOSE_NOTIFY_WAIT}:
     * a blocking write would wait for a client that does not read; the caller closes the socket
     * after this, which ends the write if it still waits. Never throws.
     */
    static void sendLastWords(ByteChannel raw, ByteBuffer bytes) {
        Thread writer = Thread.ofVirtual().start(() -> {
            try {
                while (bytes.hasRemaining()) {
                    raw.write(bytes);
                }
            } catch (IOException e) {
                // closing anyway
            }
        });
        try {
            writer.join(CLOSE_NOTIFY_WAIT);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
