package org.blksnap.engine.tracker;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.StampedLock;

/**
 * Where all writers of a device meet a take. Writers {@link #enter()} (shared) for the whole time
 * from CBT mark to the end of the original write; a take {@link #close()}s it (exclusive), which
 * holds back new writers and waits until the ones inside have left, then {@link #open()}s it.
 *
 * <p>Outside a take, entering costs one uncontended CAS and a volatile read. A {@code StampedLock}
 * alone lets new readers barge past a waiting writer, so with overlapping writes a take could wait
 * for as long as writes kept coming; here a closer first announces itself, and a writer that finds
 * a closer announced steps back out and waits until the barrier opens, so a close waits only for the
 * writes already inside.
 *
 * <p>Forbidden outcomes (tested): a writer inside while the barrier is closed; a writer that entered
 * before {@code close()} returned and is still inside after it; a close that waits on writers that
 * arrived after it.
 */
public final class TakeBarrier {
    private final StampedLock lock = new StampedLock();
    /** Closers waiting for the lock or holding it. */
    private final AtomicInteger closers = new AtomicInteger();
    private final ReentrantLock gate = new ReentrantLock();
    private final Condition opened = gate.newCondition();

    /** Enters as a writer; blocks while the barrier is closed or a close waits. Returns a stamp for {@link #exit}. */
    public long enter() {
        while (true) {
            long stamp = lock.readLock();
            if (closers.get() == 0) {
                return stamp;
            }
            lock.unlockRead(stamp);
            gate.lock();
            try {
                while (closers.get() != 0) {
                    opened.awaitUninterruptibly();
                }
            } finally {
                gate.unlock();
            }
        }
    }

    /** Leaves after {@link #enter()}. */
    public void exit(long stamp) {
        lock.unlockRead(stamp);
    }

    /** Closes: waits for writers inside to leave and holds back new ones. Returns a stamp for {@link #open}. */
    public long close() {
        closers.incrementAndGet();
        return lock.writeLock();
    }

    /** Opens after {@link #close()}. */
    public void open(long stamp) {
        lock.unlockWrite(stamp);
        if (closers.decrementAndGet() == 0) {
            gate.lock();
            try {
                opened.signalAll();
            } finally {
                gate.unlock();
            }
        }
    }

    /** Whether the barrier is closed now (for tests and status). */
    public boolean isClosed() {
        return lock.isWriteLocked();
    }
}
