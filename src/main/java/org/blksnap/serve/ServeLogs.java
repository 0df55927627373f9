package org.blksnap.serve;

import java.time.Duration;
import org.blksnap.backup.RepositoryException;
import org.blksnap.util.RateLimitedLog;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.slf4j.event.Level;

/**
 * The log lines of {@code serve} that clients can cause at will, rate-limited (the first 5 of each
 * 10 s in full, then a count; see {@link RateLimitedLog}). The server flushes them every interval
 * and at exit. Thread-safe.
 */
final class ServeLogs {
    static final Duration INTERVAL = Duration.ofSeconds(10);
    static final int FULL_PER_INTERVAL = 5;
    private static final Logger LOG = LoggerFactory.getLogger(PointServer.class);

    /** A read failed on a damaged or missing chunk or node (the message names the point and the chunk). */
    private final RateLimitedLog damaged = new RateLimitedLog(LOG, Level.ERROR,
            "reads failed on damaged or missing chunks", FULL_PER_INTERVAL, INTERVAL);

    void damaged(RepositoryException e) {
        damaged.log("read failed ({}): {}; the client gets EIO (blksnap verify names every damaged chunk)", e.code(),
                e.getMessage());
    }

    /** Reads that failed so far. */
    long damagedReads() {
        return damaged.total();
    }

    void flush() {
        damaged.flush();
    }
}
