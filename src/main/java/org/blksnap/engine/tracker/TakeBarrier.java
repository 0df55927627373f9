package org.blksnap.engine.tracker;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.StampedLock;

/**
 * Where all writers of a device meet a take. Writers {@link #enter()} (shared) for the whole time
 * from CBT mark to the end of the original write; a take {@link #close()}s it (exclusive), which
 * holds back new writers and waits until the ones inside have left, then {@link #open()}s it.
 *
 * <p>Thread-safe; any number of writers and closers, platform or virtual threads. Outside a take,
 * entering costs one uncontended CAS and a volatile read.
 *
 * <p>A {@code StampedLock} alone lets new readers barge past a waiting writer, so with overlapping
 * writes a take could wait for as long as writes kept coming. Here a closer first announces itself,
 * and a writer that finds a closer announced steps back out and waits until the barrier opens, so a
 * close waits only for the writes already inside.
 *
 * <p>Nobody ever waits in a queue behind a thread that is not running. Writers never queue on the
 * lock (they only try it) and {@link #open()} takes no lock: it swaps the gate and releases a latch.
 * Virtual threads are not preempted, so a ready virtual thread may wait a long time for a carrier;
 * a design in which {@code open()} had to acquire a lock that such a thread was next in line for
 * hung whenever every carrier was busy (seen with more carriers than cores).
 *
 * <p>Forbidden outcomes (tested): a writer inside while the barrier is closed; a writer that entered
 * before {@code close()} returned and is still inside after it; a close that waits on writers that
 * arrived after it; an {@code open()} that blocks.
 */
final class TakeBarrier {
    /** How many closers are announced (waiting for the lock or holding it), and what opens them. */
    private record Gate(int closers, CountDownLatch opened) {}

    private static final Gate OPEN = new Gate(0, new CountDownLatch(0));

    private final StampedLock lock = new StampedLock();
    private final AtomicReference<Gate> gate = new AtomicReference<>(OPEN);

    /**
     * Enters as a writer; blocks while the barrier is closed or a close waits. Returns a stamp for
     * {@link #exit}. Uninterruptible: an interrupt that arrives while waiting is kept for the caller.
     */
    long enter() {
        boolean interrupted = false;
        try {
            while (true) {
                long stamp = lock.tryReadLock();
                Gate g = gate.get();
                if (g.closers() == 0 && stamp != 0) {
                    return stamp;
                }
                if (stamp != 0) {
                    lock.unlockRead(stamp);
                }
                // Not in the lock: wait for the gate read above to open. If it opened already (the
                // write lock was still held while we looked), the await returns at once.
                try {
                    g.opened().await();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Leaves after {@link #enter()}. Never blocks. */
    void exit(long stamp) {
        lock.unlockRead(stamp);
    }

    /**
     * Closes: waits for writers inside to leave and holds back new ones. Returns a stamp for
     * {@link #open}. Closers exclude each other; each waits only for writers already inside.
     */
    long close() {
        while (true) {
            Gate g = gate.get();
            Gate next = g.closers() == 0 ? new Gate(1, new CountDownLatch(1)) : new Gate(g.closers() + 1, g.opened());
            if (gate.compareAndSet(g, next)) {
                break;
            }
        }
        return lock.writeLock();
    }

    /**
     * Opens after {@link #close()}. Never blocks; when the last closer opens, waiting writers go on.
     *
     * @throws IllegalStateException if no close() is announced, or {@code stamp} is not the one the
     *                               close() holding the barrier returned; the barrier is left as it was
     */
    void open(long stamp) {
        // Checked before the unlock, which would otherwise fail first with the JDK's exception.
        if (gate.get().closers() <= 0) {
            throw new IllegalStateException("open() without a matching close()");
        }
        try {
            lock.unlockWrite(stamp);
        } catch (IllegalMonitorStateException e) {
            throw new IllegalStateException("open(" + stamp + ") with a stamp that no close() holding the barrier returned", e);
        }
        // Our own close() is still counted (only the holder of the write lock opens), so closers >= 1.
        while (true) {
            Gate g = gate.get();
            Gate next = g.closers() == 1 ? OPEN : new Gate(g.closers() - 1, g.opened());
            if (gate.compareAndSet(g, next)) {
                if (next == OPEN) {
                    g.opened().countDown();
                }
                return;
            }
        }
    }

    /** Whether the barrier is closed now (for tests and status). */
    boolean isClosed() {
        return lock.isWriteLocked();
    }
}
