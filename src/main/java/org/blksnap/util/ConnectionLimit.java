package org.blksnap.util;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * The rule both servers (NBD and the control API) apply to a new connection: at most
 * {@code maxServed} connections are served at once; one beyond that is refused in the protocol's
 * own words (NBD: NBD_REP_ERR_POLICY; control API: EAGAIN) so its client can say why, while at most
 * {@code maxRefusing} refusals run at once (each holds a thread and a socket for a few seconds);
 * beyond that a connection is closed at once without a word.
 *
 * <p>Thread-safe, lock-free: {@link #admit()} takes a slot atomically, so concurrent accepts never
 * serve more than the limit. Every {@link Admission#SERVE} must be given back with {@link #release()}
 * and every {@link Admission#REFUSE} with {@link #refusalEnded()}.
 */
public final class ConnectionLimit {
    /** What becomes of a new connection. */
    public enum Admission {
        /** Served: a slot is held until {@link #release()}. */
        SERVE,
        /** Refused with a reason in the protocol: a refusal slot is held until {@link #refusalEnded()}. */
        REFUSE,
        /** Closed at once: too many refusals are running. Nothing is held. */
        DROP
    }

    private final int maxServed;
    private final int maxRefusing;
    private final AtomicInteger served = new AtomicInteger();
    private final AtomicInteger refusing = new AtomicInteger();

    /**
     * @param maxServed   connections served at once (>= 1)
     * @param maxRefusing refusals running at once (>= 0)
     */
    public ConnectionLimit(int maxServed, int maxRefusing) {
        if (maxServed < 1) {
            throw new IllegalArgumentException("maxServed (" + maxServed + ") must be >= 1");
        }
        if (maxRefusing < 0) {
            throw new IllegalArgumentException("maxRefusing (" + maxRefusing + ") must be >= 0");
        }
        this.maxServed = maxServed;
        this.maxRefusing = maxRefusing;
    }

    /** Decides for a new connection, and takes the slot that decision holds. */
    public Admission admit() {
        while (true) {
            int now = served.get();
            if (now >= maxServed) {
                return refuse();
            }
            if (served.compareAndSet(now, now + 1)) {
                return Admission.SERVE;
            }
        }
    }

    /** Counts a connection served without asking (e.g. one handed to the server directly). */
    public void serveAnyway() {
        served.incrementAndGet();
    }

    /**
     * Decides for a connection refused for another reason (no memory for it): {@link Admission#REFUSE}
     * while there is room for another refusal, else {@link Admission#DROP}.
     */
    public Admission refuse() {
        if (refusing.incrementAndGet() > maxRefusing) {
            refusing.decrementAndGet();
            return Admission.DROP;
        }
        return Admission.REFUSE;
    }

    /** Gives back the slot of a served connection that ended. */
    public void release() {
        served.decrementAndGet();
    }

    /** Gives back the slot of a refusal that ended. */
    public void refusalEnded() {
        refusing.decrementAndGet();
    }

    /** Connections served now. */
    public int served() {
        return served.get();
    }

    /** Refusals running now. */
    public int refusing() {
        return refusing.get();
    }

    public int maxServed() {
        return maxServed;
    }

    public int maxRefusing() {
        return maxRefusing;
    }

    /** Why a connection is refused, in the words both servers use: "N connections already, the limit". */
    public String reason() {
        return maxServed + " connections already, the limit";
    }
}
