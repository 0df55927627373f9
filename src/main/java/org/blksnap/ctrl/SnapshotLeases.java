package org.blksnap.ctrl;

import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.LongSupplier;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Snapshots created with a lease ({@code snapshot/create} with {@code leaseSeconds}): each lives while
 * its creator renews it ({@code snapshot/renew}, or a {@code snapshot/wait-event} of it) and is
 * destroyed by the daemon when a whole lease passes without one. A backup killed with SIGKILL then
 * stops costing copy-on-write and storage growth within a lease, not only when the next backup of
 * the same host finds its marker. The engine knows nothing of leases (upstream has none); this is
 * the control API's policy over {@link Blksnap#snapshotDestroy}. The leases are not persistent:
 * neither are snapshots.
 *
 * <p>Thread-safe: a concurrent map of deadlines; one virtual thread destroys expired snapshots.
 */
final class SnapshotLeases implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(SnapshotLeases.class);
    /** Shortest and longest lease, in seconds. */
    static final long MIN_SECONDS = 1;
    static final long MAX_SECONDS = 7 * 24 * 3600;
    /** How often expiries are looked for, in milliseconds. */
    static final long CHECK_MILLIS = 250;

    private record Lease(long seconds, long deadlineNanos) {
    }

    private final Blksnap engine;
    private final LongSupplier nanoTime;
    private final Map<UUID, Lease> leases = new ConcurrentHashMap<>();
    private final Thread reaper;
    private volatile boolean closed;

    SnapshotLeases(Blksnap engine) {
        this(engine, System::nanoTime);
    }

    SnapshotLeases(Blksnap engine, LongSupplier nanoTime) {
        this.engine = engine;
        this.nanoTime = nanoTime;
        this.reaper = Thread.ofVirtual().name("snapshot-leases").start(this::reapUntilClosed);
    }

    /**
     * The rule for a lease's length, checked before the snapshot is created so a bad value creates nothing.
     *
     * @throws BlksnapException EINVAL outside {@link #MIN_SECONDS}..{@link #MAX_SECONDS}
     */
    static void check(long seconds) {
        if (seconds < MIN_SECONDS || seconds > MAX_SECONDS) {
            throw new BlksnapException(Errno.EINVAL, "leaseSeconds (" + seconds + ") must be within " + MIN_SECONDS
                    + ".." + MAX_SECONDS);
        }
    }

    /** A lease of {@code seconds} that starts now. */
    private Lease startingNow(long seconds) {
        return new Lease(seconds, nanoTime.getAsLong() + seconds * 1_000_000_000L);
    }

    /** Starts the lease of a snapshot just created. */
    void hold(UUID id, long seconds) {
        check(seconds);
        leases.put(id, startingNow(seconds));
    }

    /**
     * Restarts the lease of {@code id}.
     *
     * @throws BlksnapException ESRCH no such snapshot (or it expired); EINVAL it was created without a lease
     */
    void renew(UUID id) {
        Lease renewed = leases.computeIfPresent(id, (k, l) -> startingNow(l.seconds()));
        if (renewed == null) {
            if (engine.snapshotCollect().contains(id)) {
                throw new BlksnapException(Errno.EINVAL, "snapshot " + id + " has no lease to renew");
            }
            throw new BlksnapException(Errno.ESRCH, "snapshot " + id + " does not exist");
        }
    }

    /** Renews the lease of {@code id} if it has one (a wait-event of it shows its creator is alive). */
    void touch(UUID id) {
        leases.computeIfPresent(id, (k, l) -> startingNow(l.seconds()));
    }

    /** A lease as {@code status} shows it: its length in seconds and the milliseconds left of it (at least 0). */
    record Left(long seconds, long leftMillis) {
    }

    /** The lease of {@code id} and what is left of it now, or null without one. */
    Left lease(UUID id) {
        Lease l = leases.get(id);
        if (l == null) {
            return null;
        }
        return new Left(l.seconds(), Math.max(0, (l.deadlineNanos() - nanoTime.getAsLong()) / 1_000_000));
    }

    /** Forgets the lease of a snapshot destroyed otherwise. */
    void forget(UUID id) {
        leases.remove(id);
    }

    /** Destroys the snapshots whose lease ran out; returns how many were destroyed. */
    int reapExpired() {
        int n = 0;
        long now = nanoTime.getAsLong();
        for (Map.Entry<UUID, Lease> e : leases.entrySet()) {
            Lease l = e.getValue();
            if (now - l.deadlineNanos() < 0 || !leases.remove(e.getKey(), l)) {
                continue; // not due, or renewed meanwhile
            }
            try {
                engine.snapshotDestroy(e.getKey());
                n++;
                LOG.warn("snapshot {} destroyed: its lease of {} s ran out without a renewal (its creator stopped or was"
                        + " killed); its storage files are left for their owner", e.getKey(), l.seconds());
            } catch (BlksnapException x) {
                if (x.errno() != Errno.ESRCH) {
                    LOG.warn("snapshot {}: its lease ran out but destroying it failed: {} {}", e.getKey(),
                            x.errno(), x.getMessage());
                }
            }
        }
        return n;
    }

    private void reapUntilClosed() {
        while (!closed) {
            try {
                Thread.sleep(CHECK_MILLIS);
                reapExpired();
            } catch (InterruptedException e) {
                return;
            } catch (RuntimeException e) {
                LOG.warn("snapshot leases: {}", e.toString());
            }
        }
    }

    @Override
    public void close() {
        closed = true;
        reaper.interrupt();
    }
}
