package org.blksnap.engine.tracker;

import java.util.concurrent.locks.StampedLock;

/**
 * Where all writers of a device meet a take. Writers {@link #enter()} (shared) for the whole time
 * from CBT mark to the end of the original write; a take {@link #close()}s it (exclusive), which
 * holds back new writers and waits until the ones inside have left, then {@link #open()}s it.
 *
 * <p>Outside a take, entering costs one uncontended CAS. Forbidden outcomes (tested): a writer
 * inside while the barrier is closed; a writer that entered before {@code close()} returned and is
 * still inside after it.
 */
public final class TakeBarrier {
    private final StampedLock lock = new StampedLock();

    /** Enters as a writer; blocks while the barrier is closed. Returns a stamp for {@link #exit}. */
    public long enter() {
        return lock.readLock();
    }

    /** Leaves after {@link #enter()}. */
    public void exit(long stamp) {
        lock.unlockRead(stamp);
    }

    /** Closes: waits for writers inside to leave and holds back new ones. Returns a stamp for {@link #open}. */
    public long close() {
        return lock.writeLock();
    }

    /** Opens after {@link #close()}. */
    public void open(long stamp) {
        lock.unlockWrite(stamp);
    }

    /** Whether the barrier is closed now (for tests and status). */
    public boolean isClosed() {
        return lock.isWriteLocked();
    }
}
