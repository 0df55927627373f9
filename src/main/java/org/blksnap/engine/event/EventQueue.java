package org.blksnap.engine.event;

import java.util.ArrayDeque;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.SnapshotEvent;

/**
 * The FIFO event queue of one snapshot.
 *
 * <p>Thread-safe. Each event goes to exactly one waiter: a waiter pops under the lock and waits
 * again if another took the event first (v1 popped without checking). Timeouts are real
 * milliseconds (v1 passed them as jiffies). {@link #close()} wakes every waiter, which then fails
 * with ESRCH (v1 did not wake them, so a destroyed snapshot lingered until their timeout).
 */
public final class EventQueue {
    private final String owner;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition nonEmpty = lock.newCondition();
    private final ArrayDeque<SnapshotEvent> events = new ArrayDeque<>();
    private boolean closed;

    /** @param owner what the queue belongs to, for messages (the snapshot id) */
    public EventQueue(String owner) {
        this.owner = owner;
    }

    /** Queues an event; ignored once closed. */
    public void post(SnapshotEvent event) {
        lock.lock();
        try {
            if (closed) {
                return;
            }
            events.addLast(event);
            nonEmpty.signal();
        } finally {
            lock.unlock();
        }
    }

    /**
     * Removes and returns the oldest event, waiting up to {@code timeoutMillis}.
     *
     * @throws BlksnapException ENOENT on timeout, ESRCH if the queue is or becomes closed, EINTR if the
     *                          thread is interrupted (its interrupt status is kept), EINVAL for a
     *                          negative timeout
     */
    public SnapshotEvent take(long timeoutMillis) {
        if (timeoutMillis < 0) {
            throw new BlksnapException(Errno.EINVAL, "timeout (" + timeoutMillis + " ms) must be >= 0");
        }
        long remaining = TimeUnit.MILLISECONDS.toNanos(timeoutMillis);
        lock.lock();
        try {
            while (true) {
                if (closed) {
                    throw new BlksnapException(Errno.ESRCH, "snapshot " + owner + " was destroyed");
                }
                SnapshotEvent e = events.pollFirst();
                if (e != null) {
                    return e;
                }
                if (remaining <= 0) {
                    throw new BlksnapException(Errno.ENOENT, "no event for snapshot " + owner + " within "
                            + timeoutMillis + " ms");
                }
                try {
                    remaining = nonEmpty.awaitNanos(remaining);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    throw new BlksnapException(Errno.EINTR, "wait for an event of snapshot " + owner + " was interrupted");
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /** Events queued and not yet taken. */
    public int pending() {
        lock.lock();
        try {
            return events.size();
        } finally {
            lock.unlock();
        }
    }

    /** Discards pending events and wakes all waiters (they fail with ESRCH). Idempotent. */
    public void close() {
        lock.lock();
        try {
            closed = true;
            events.clear();
            nonEmpty.signalAll();
        } finally {
            lock.unlock();
        }
    }
}
