package org.blksnap.nbd;

/**
 * Told of every request an export answered, with how long it took: the seam where a metrics
 * registry measures latency, so the NBD package needs none. Set per export with
 * {@link NbdServer#observeRequests}. Called on the request's own thread, once per request, after its
 * reply was written (or failed); implementations must be thread-safe and cheap (a histogram update),
 * must not block and must not throw.
 */
@FunctionalInterface
public interface RequestObserver {
    /** Observes nothing (the default). */
    RequestObserver NONE = (command, nanos) -> {
    };

    /** The NBD commands; {@link #ordinal()} is the command's number on the wire. */
    enum Command {
        READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS;

        private static final Command[] BY_TYPE = values();

        /** The command of wire type {@code type}, or null for a number NBD does not define. */
        static Command of(int type) {
            return type >= 0 && type < BY_TYPE.length ? BY_TYPE[type] : null;
        }
    }

    /**
     * @param command what was asked
     * @param nanos   from the moment the request was handed to its thread to the moment its reply was
     *                written, in nanoseconds (successes and errors alike)
     */
    void requestDone(Command command, long nanos);
}
