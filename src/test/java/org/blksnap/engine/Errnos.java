package org.blksnap.engine;



/** Test helper: the errno a call fails with. */
public final class Errnos {
    private Errnos() {
    }

    /** An action that may throw anything. */
    @FunctionalInterface
    public interface Action {
        void run() throws Exception;
    }

    /** The errno of the BlksnapException the action throws, or null if it returns normally. */
    public static Errno errnoOf(Action action) {
        try {
            action.run();
        } catch (BlksnapException e) {
            return e.errno();
        } catch (Exception e) {
            throw new AssertionError("expected a BlksnapException, got " + e, e);
        }
        return null;
    }
}
