package org.blksnap.engine;

/**
 * Called around the take barrier: {@link #beforeBarrier()} just before new writes are held back
 * (the daemon runs {@code fsfreeze -f} there), {@link #afterBarrier()} right after they resume
 * ({@code fsfreeze -u}), always, even when the take failed.
 */
public interface TakeHooks {
    /** No hooks. */
    TakeHooks NONE = new TakeHooks() {
    };

    /**
     * Runs before the barrier closes. An exception aborts the take (the snapshot stays created,
     * not taken) after {@link #afterBarrier()} has run.
     */
    default void beforeBarrier() throws Exception {
    }

    /** Runs after the barrier opened again, whether or not the take succeeded. */
    default void afterBarrier() throws Exception {
    }
}
