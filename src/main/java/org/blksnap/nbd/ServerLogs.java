package org.blksnap.nbd;

import java.time.Duration;
import org.blksnap.util.RateLimitedLog;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.slf4j.event.Level;

/**
 * The log lines of a server that clients can cause at will, each kind rate-limited: the first
 * {@link #FULL_PER_INTERVAL} of each {@link #INTERVAL} in full, then a count (see
 * {@link RateLimitedLog}). So a hostile client costs at most 9 kinds x 6 lines per 10 s. The server
 * calls {@link #flush()} every interval and when it closes. Thread-safe.
 */
final class ServerLogs {
    static final Duration INTERVAL = Duration.ofSeconds(10);
    static final int FULL_PER_INTERVAL = 5;
    private static final Logger LOG = LoggerFactory.getLogger(NbdServer.class);

    /** A connection broke the protocol and was dropped. */
    final RateLimitedLog protocolErrors = limited(Level.WARN, "connections ended with protocol errors");
    /** A connection failed with an I/O error (reset, broken pipe) outside shutdown. */
    final RateLimitedLog failedConnections = limited(Level.INFO, "connections failed with I/O errors");
    /** A connection was refused (too many connections, no memory). */
    final RateLimitedLog refused = limited(Level.WARN, "connections refused");
    /** A TLS client was turned away for its credentials (an unknown PSK identity, a wrong key). */
    final RateLimitedLog tlsRefused = limited(Level.WARN, "TLS clients refused for their credentials");
    /** A request failed with an I/O error of the device. */
    final RateLimitedLog failedRequests = limited(Level.WARN, "requests failed with I/O errors");
    /** Direct memory ran out for a connection or a request. */
    final RateLimitedLog memoryShortage = limited(Level.WARN, "requests or connections short of native memory");
    /** A connection ended while requests were still running (e.g. its client stopped reading replies). */
    final RateLimitedLog abandonedRequests = limited(Level.WARN, "connections closed with requests still running");
    /** A connection was dropped because its client took too long (handshake, request, reading a reply). */
    final RateLimitedLog timeouts = limited(Level.WARN, "connections dropped by a timeout");
    /** A bug: an unexpected exception in a connection or a request (logged with its stack trace). */
    final RateLimitedLog unexpected = limited(Level.ERROR, "unexpected failures of connections or requests");

    private static RateLimitedLog limited(Level level, String what) {
        return new RateLimitedLog(LOG, level, what, FULL_PER_INTERVAL, INTERVAL);
    }

    /** Writes the counts of the current interval. */
    void flush() {
        for (RateLimitedLog l : new RateLimitedLog[] {protocolErrors, failedConnections, refused, tlsRefused, failedRequests,
                memoryShortage, abandonedRequests, timeouts, unexpected}) {
            l.flush();
        }
    }
}
