package org.blksnap.nbd;

import java.time.Duration;

/**
 * How long the client of one connection may take to send what it owes and to take a reply off the
 * wire. A connection arms a read deadline for its whole handshake ({@link #handshake()}) and, in
 * transmission, from the first byte of a request until its last payload byte
 * ({@link #requestStarted()}); an idle connection between requests, or one waiting for its own
 * in-flight budget, has none ({@link #idle()}). A write deadline is armed around every message
 * written ({@link #writing()}/{@link #written()}). The server's reaper calls {@link #expired} about
 * every {@link #checkIntervalNanos} and closes the socket of a connection past a deadline, which
 * ends whatever its threads were blocked in.
 *
 * <p>Deadlines are {@link System#nanoTime()} values; a timeout of zero disables that deadline.
 * Thread-safe: the fields are volatile, written by the connection's reader and request threads
 * (the reply lock orders the writers) and read by the reaper.
 */
final class Deadlines {
    /** No deadline armed. */
    static final long NONE = Long.MAX_VALUE;
    /** Deadlines that never expire (connections served without timeouts, e.g. a refusal's helper). */
    static final Deadlines DISABLED = new Deadlines(Duration.ZERO, Duration.ZERO, Duration.ZERO);

    private final long handshakeNanos;
    private final long requestNanos;
    private final long replyNanos;
    private volatile long readBy = NONE;
    private volatile String owed = "";
    private volatile long writeBy = NONE;

    /**
     * @param handshake how long the whole option haggling may take (zero: unlimited)
     * @param request   how long a request may take to arrive once its first byte has (zero: unlimited)
     * @param reply     how long one reply message may take to be written (zero: unlimited)
     */
    Deadlines(Duration handshake, Duration request, Duration reply) {
        this.handshakeNanos = handshake.toNanos();
        this.requestNanos = request.toNanos();
        this.replyNanos = reply.toNanos();
    }

    /** Arms the read deadline for the handshake. Reader thread only. */
    void handshake() {
        arm(handshakeNanos, "the handshake");
    }

    /** Arms the read deadline for the rest of a request, unless one is armed already. Reader thread only. */
    void requestStarted() {
        if (readBy == NONE) {
            arm(requestNanos, "the rest of a request");
        }
    }

    /** The client owes nothing: no read deadline. Reader thread only. */
    void idle() {
        readBy = NONE;
    }

    private void arm(long nanos, String what) {
        if (nanos > 0) {
            owed = what;
            readBy = System.nanoTime() + nanos;
        }
    }

    /** A message is about to be written. Under the connection's reply lock. */
    void writing() {
        if (replyNanos > 0) {
            writeBy = System.nanoTime() + replyNanos;
        }
    }

    /** The message is written (or failed). Under the connection's reply lock. */
    void written() {
        writeBy = NONE;
    }

    /**
     * What the client failed to do in time at {@code nowNanos}, for the log ("took longer than 30 s
     * to send the rest of a request"), or null while no deadline has passed.
     */
    String expired(long nowNanos) {
        long w = writeBy;
        if (w != NONE && nowNanos - w >= 0) {
            return "did not read a reply within " + seconds(replyNanos);
        }
        long r = readBy;
        if (r != NONE && nowNanos - r >= 0) {
            return "took longer than " + seconds(owed.equals("the handshake") ? handshakeNanos : requestNanos)
                    + " to send " + owed;
        }
        return null;
    }

    /** How often a reaper should look: a quarter of the shortest timeout, between 50 ms and 1 s. */
    static long checkIntervalNanos(Duration... timeouts) {
        long shortest = Long.MAX_VALUE;
        for (Duration t : timeouts) {
            if (t.isPositive()) {
                shortest = Math.min(shortest, t.toNanos());
            }
        }
        return Math.clamp(shortest / 4, 50_000_000L, 1_000_000_000L);
    }

    private static String seconds(long nanos) {
        return Duration.ofNanos(nanos).toMillis() / 1000.0 + " s";
    }
}
