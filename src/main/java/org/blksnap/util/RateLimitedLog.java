package org.blksnap.util;

import java.time.Duration;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.event.Level;
import org.slf4j.helpers.FormattingTuple;
import org.slf4j.helpers.MessageFormatter;

/**
 * One kind of log line that clients can cause at will (a connection ending with a protocol error, a
 * refused connection, a malformed request), logged as a count per interval instead of a line per
 * event: the first {@code fullPerInterval} events of each interval are logged in full, the rest
 * are counted, and a summary line follows at the end of the interval, e.g. {@code 1,234 more
 * connections ended with protocol errors in the last 10 s (not logged one by one); last: ...}.
 * A client flooding the daemon therefore costs at most {@code fullPerInterval + 1} lines per
 * interval and kind, and an operator still sees the first few in full and the volume.
 *
 * <p>The summary of an interval is written by the first event after it, or by {@link #flush()},
 * which the owner calls periodically (and once when it stops) so that the count of the last burst
 * is not held back.
 *
 * <p>Thread-safe: events may come from any number of threads; the counts are exact (every event is
 * either logged in full or counted in exactly one summary). The lock is held only to count; lines
 * are written outside it.
 */
public final class RateLimitedLog {
    /** Where lines go: the format and arguments of an SLF4J call (a trailing Throwable is its cause). */
    @FunctionalInterface
    interface Sink {
        void write(String format, Object[] args);
    }

    private final Sink sink;
    private final String what;
    private final int fullPerInterval;
    private final long intervalNanos;
    private final LongSupplier nanoTime;
    private final ReentrantLock lock = new ReentrantLock();
    // Guarded by lock.
    private long intervalStart;
    private int fullInInterval;
    private long suppressed;
    private String lastFormat;
    private Object[] lastArgs;
    private long total;

    /**
     * @param log             where lines go
     * @param level           their level
     * @param what            the plural noun phrase of the summary, e.g. "connections ended with protocol errors"
     * @param fullPerInterval events logged in full per interval (>= 0)
     * @param interval        the interval (> 0)
     */
    public RateLimitedLog(Logger log, Level level, String what, int fullPerInterval, Duration interval) {
        this((format, args) -> toLogger(log, level, format, args), what, fullPerInterval, interval, System::nanoTime);
    }

    private static void toLogger(Logger log, Level level, String format, Object[] args) {
        if (args.length > 0 && args[args.length - 1] instanceof Throwable cause) {
            log.atLevel(level).setCause(cause).log(format, Arrays.copyOf(args, args.length - 1));
        } else {
            log.atLevel(level).log(format, args);
        }
    }

    RateLimitedLog(Sink sink, String what, int fullPerInterval, Duration interval, LongSupplier nanoTime) {
        this.sink = Objects.requireNonNull(sink, "sink");
        this.what = Objects.requireNonNull(what, "what");
        if (fullPerInterval < 0) {
            throw new IllegalArgumentException("fullPerInterval (" + fullPerInterval + ") must be >= 0");
        }
        if (interval.isNegative() || interval.isZero()) {
            throw new IllegalArgumentException("interval (" + interval + ") must be > 0");
        }
        this.fullPerInterval = fullPerInterval;
        this.intervalNanos = interval.toNanos();
        this.nanoTime = nanoTime;
        this.intervalStart = nanoTime.getAsLong();
    }

    /** One event, as an SLF4J call: {@code format} with {} placeholders, a trailing Throwable is logged as the cause. */
    public void log(String format, Object... args) {
        String summary;
        boolean full;
        lock.lock();
        try {
            total++;
            long now = nanoTime.getAsLong();
            summary = now - intervalStart >= intervalNanos ? endInterval(now) : null;
            full = fullInInterval < fullPerInterval;
            if (full) {
                fullInInterval++;
            } else {
                suppressed++;
                lastFormat = format;
                lastArgs = args;
            }
        } finally {
            lock.unlock();
        }
        if (summary != null) {
            sink.write("{}", new Object[] {summary});
        }
        if (full) {
            sink.write(format, args);
        }
    }

    /** Writes the summary of the current interval if events were counted in it, and starts a new interval. */
    public void flush() {
        String summary;
        lock.lock();
        try {
            summary = endInterval(nanoTime.getAsLong());
        } finally {
            lock.unlock();
        }
        if (summary != null) {
            sink.write("{}", new Object[] {summary});
        }
    }

    /** Events so far, logged in full or counted. */
    public long total() {
        lock.lock();
        try {
            return total;
        } finally {
            lock.unlock();
        }
    }

    /** Closes the interval at {@code now}: the summary line, or null if nothing was counted. */
    private String endInterval(long now) {
        String summary = null;
        if (suppressed > 0) {
            FormattingTuple last = MessageFormatter.arrayFormat(lastFormat, lastArgs);
            String lastText = last.getMessage() + (last.getThrowable() == null ? "" : " (" + last.getThrowable() + ")");
            long seconds = Math.max(1, Math.round((now - intervalStart) / 1e9));
            summary = String.format("%,d more %s in the last %d s (not logged one by one); last: %s", suppressed, what,
                    seconds, lastText);
        }
        intervalStart = now;
        fullInInterval = 0;
        suppressed = 0;
        lastFormat = null;
        lastArgs = null;
        return summary;
    }
}
