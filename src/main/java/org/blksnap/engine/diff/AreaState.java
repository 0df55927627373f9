package org.blksnap.engine.diff;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Whether a diff area may still be used: intact, corrupted (the first errno wins, as the module's
 * {@code diff_area_set_corrupted}) or closed (its snapshot was destroyed).
 *
 * <p>Thread-safe and lock-free. Corruption is recorded in two steps so that nobody calls out while
 * holding a lock: {@link #declareCorrupted} is a compare-and-set that any thread may make under a
 * chunk lock (so that the area is corrupted before that chunk is released); the thread whose
 * declaration won then calls {@link #report} once it holds no lock, which logs, drops the cached
 * chunk buffers and tells the owner. Forbidden outcomes (tested): two reports for one area; a
 * reported errno other than the recorded one; a report made while the failed chunk is locked.
 */
final class AreaState {
    private static final Logger LOG = LoggerFactory.getLogger(DiffArea.class);
    private static final VarHandle CORRUPTED;

    static {
        try {
            CORRUPTED = MethodHandles.lookup().findVarHandle(AreaState.class, "corrupted", Errno.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /** A corruption this thread declared first and must report once it holds no lock. */
    record Report(Errno errno, String message) {
    }

    private final String device;
    private final DiffArea.Owner owner;
    private final Runnable dropBuffers;
    private volatile Errno corrupted;
    private volatile boolean closed;

    /**
     * @param device      device name, for messages and the owner
     * @param owner       told once, with no lock held, when the area becomes corrupted
     * @param dropBuffers run once at corruption, before the owner is told (empties the chunk cache)
     */
    AreaState(String device, DiffArea.Owner owner, Runnable dropBuffers) {
        this.device = device;
        this.owner = owner;
        this.dropBuffers = dropBuffers;
    }

    /** The errno that corrupted this area, or null. */
    Errno corruption() {
        return corrupted;
    }

    /** The errno that corrupted the snapshot (any of its devices), or null. */
    Errno snapshotCorruption() {
        return owner.corruption();
    }

    boolean isClosed() {
        return closed;
    }

    /** Whether copy-on-write has nothing left to do: corrupted or closed. */
    boolean stopped() {
        return corrupted != null || closed;
    }

    void close() {
        closed = true;
    }

    /**
     * Records {@code errno} if nothing was recorded before. Makes no call-out, so it may run under a
     * chunk lock.
     *
     * @return what to {@link #report} once no lock is held, or null if another corruption came first
     */
    Report declareCorrupted(Errno errno, String message) {
        return CORRUPTED.compareAndSet(this, null, errno) ? new Report(errno, message) : null;
    }

    /**
     * A chunk's copy failed with {@code cause}: {@link #declareCorrupted} with its errno (the
     * exception's own for a {@link BlksnapException}, such as ENOSPC for an overflow, else EIO).
     */
    Report declareChunkFailed(long chunkIndex, Exception cause) {
        Errno errno = cause instanceof BlksnapException b ? b.errno() : Errno.EIO;
        return declareCorrupted(errno, "chunk " + chunkIndex + ": " + cause.getMessage());
    }

    /** Makes the call-outs of a won declaration; does nothing for null. Never call it holding a lock. */
    void report(Report report) {
        if (report == null) {
            return;
        }
        LOG.warn("{}: snapshot copy-on-write failed ({}): {}", device, report.errno(), report.message());
        dropBuffers.run();
        owner.deviceCorrupted(device, report.errno(), report.message());
    }

    /** {@link #declareCorrupted} and {@link #report} at once, for callers that hold no lock. */
    void markCorrupted(Errno errno, String message) {
        report(declareCorrupted(errno, message));
    }

    /**
     * @throws BlksnapException ENODEV once closed; EIO once this area or the snapshot is corrupted
     */
    void checkUsable() {
        if (closed) {
            throw new BlksnapException(Errno.ENODEV, device + ": the snapshot was destroyed");
        }
        Errno e = owner.corruption();
        if (e == null) {
            e = corrupted;
        }
        if (e != null) {
            throw new BlksnapException(Errno.EIO, device + ": the snapshot is corrupted (" + e + ")");
        }
    }

    /**
     * What image I/O that failed with {@code e} after {@link #close()} throws: destroyed (ENODEV),
     * not whatever the teardown broke under it (chunks gone, storage channels closed).
     */
    BlksnapException destroyedDuring(Exception e) {
        if (e instanceof BlksnapException b && b.errno() == Errno.ENODEV) {
            return b;
        }
        return new BlksnapException(Errno.ENODEV, device + ": the snapshot was destroyed during image I/O", e);
    }
}
