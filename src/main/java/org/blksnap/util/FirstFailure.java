package org.blksnap.util;

import java.util.function.Function;

/**
 * The one way a cleanup goes on past failures: every step runs, the first failure is kept, and
 * each later one is added to it as suppressed; at the end the first is thrown.
 *
 * <pre>{@code
 * FirstFailure failures = new FirstFailure();
 * for (Closeable c : resources) {
 *     failures.run(c::close);
 * }
 * failures.throwIfAny(IOException.class, e -> new IOException("closing failed: " + e.getMessage(), e));
 * }</pre>
 *
 * <p>Not thread-safe: one instance per cleanup, on one thread.
 */
public final class FirstFailure {
    /** A cleanup step. */
    @FunctionalInterface
    public interface Step {
        void run() throws Exception;
    }

    private Exception first;
    private int count;

    /** Runs {@code step}; a failure is recorded, not thrown. Errors ({@link Error}) are not caught. */
    public void run(Step step) {
        try {
            step.run();
        } catch (Exception e) {
            add(e);
        }
    }

    /** Records a failure caught elsewhere. */
    public void add(Exception e) {
        count++;
        if (first == null) {
            first = e;
        } else if (first != e) {
            first.addSuppressed(e);
        }
    }

    /** The first failure (later ones are its suppressed exceptions), or null. */
    public Exception first() {
        return first;
    }

    /** How many failures were recorded. */
    public int count() {
        return count;
    }

    /**
     * Throws the first failure, if any: as it is when it is a {@code type}, else wrapped by
     * {@code wrap} (which should keep it as the cause).
     */
    public <X extends Exception> void throwIfAny(Class<X> type, Function<Exception, X> wrap) throws X {
        if (first == null) {
            return;
        }
        if (type.isInstance(first)) {
            throw type.cast(first);
        }
        throw wrap.apply(first);
    }
}
