package org.blksnap.engine.testing;

import java.io.IOException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * Which operations of a device (or of a difference-storage file) fail, switchable at run time: by
 * operation, by byte range, after a number of calls that still pass. A failing call throws an
 * {@link IOException} naming the target, the operation, the offset and the length, and changes
 * nothing.
 *
 * <p>Thread-safe: rules may be added and dropped while I/O runs; each call is checked against the
 * rules present when it starts. A rule's "calls that still pass" are counted exactly under
 * concurrency (tested: never more or fewer pass).
 */
public final class FaultPlan {
    /** What a call does. Discards and write-zeroes count as writes. */
    public enum Op { READ, WRITE, FLUSH }

    private static final class Rule {
        final Op op;
        final long fromBytes;
        final long toBytes;
        final AtomicLong passesLeft;

        Rule(Op op, long fromBytes, long toBytes, long passes) {
            this.op = op;
            this.fromBytes = fromBytes;
            this.toBytes = toBytes;
            this.passesLeft = new AtomicLong(passes);
        }

        boolean matches(Op o, long offsetBytes, long lengthBytes) {
            if (o != op) {
                return false;
            }
            return o == Op.FLUSH || offsetBytes < toBytes && fromBytes < offsetBytes + Math.max(lengthBytes, 1);
        }

        /** Whether this matching call fails: once the calls that still pass are used up. */
        boolean fails() {
            return passesLeft.getAndUpdate(n -> n > 0 ? n - 1 : 0) == 0;
        }
    }

    private final String target;
    private final CopyOnWriteArrayList<Rule> rules = new CopyOnWriteArrayList<>();
    private final AtomicLongArray calls = new AtomicLongArray(Op.values().length);
    private final AtomicLongArray injected = new AtomicLongArray(Op.values().length);

    /** @param target what the plan guards, for messages (a device name or a path) */
    public FaultPlan(String target) {
        this.target = target;
    }

    /** From now on every {@code op} fails. */
    public FaultPlan fail(Op op) {
        return fail(op, 0, Long.MAX_VALUE, 0);
    }

    /** From now on every {@code op} that touches {@code [fromBytes, toBytes)} fails (flushes: every one). */
    public FaultPlan fail(Op op, long fromBytes, long toBytes) {
        return fail(op, fromBytes, toBytes, 0);
    }

    /** The next {@code passingCalls} calls of {@code op} still succeed; every later one fails. */
    public FaultPlan failAfter(Op op, long passingCalls) {
        return fail(op, 0, Long.MAX_VALUE, passingCalls);
    }

    /**
     * Calls of {@code op} touching {@code [fromBytes, toBytes)} fail once {@code passingCalls} of
     * them have succeeded.
     */
    public FaultPlan fail(Op op, long fromBytes, long toBytes, long passingCalls) {
        if (fromBytes < 0 || toBytes <= fromBytes) {
            throw new IllegalArgumentException("range [" + fromBytes + ", " + toBytes + ") must be non-empty and >= 0");
        }
        if (passingCalls < 0) {
            throw new IllegalArgumentException("passingCalls (" + passingCalls + ") must be >= 0");
        }
        rules.add(new Rule(op, fromBytes, toBytes, passingCalls));
        return this;
    }

    /** Drops every rule: from now on nothing fails. */
    public FaultPlan heal() {
        rules.clear();
        return this;
    }

    /** Calls of {@code op} checked so far, failed or not. */
    public long calls(Op op) {
        return calls.get(op.ordinal());
    }

    /** Calls of {@code op} that were failed on purpose so far. */
    public long injected(Op op) {
        return injected.get(op.ordinal());
    }

    /**
     * Called by the guarded target before it does {@code op}: returns to let it run, or throws.
     *
     * @throws IOException the injected failure
     */
    public void check(Op op, long offsetBytes, long lengthBytes) throws IOException {
        calls.incrementAndGet(op.ordinal());
        for (Rule r : rules) {
            if (r.matches(op, offsetBytes, lengthBytes) && r.fails()) {
                injected.incrementAndGet(op.ordinal());
                throw new IOException(target + ": injected " + op.name().toLowerCase(java.util.Locale.ROOT)
                        + " fault at offset " + offsetBytes + " length " + lengthBytes);
            }
        }
    }
}
