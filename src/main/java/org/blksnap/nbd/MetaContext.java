package org.blksnap.nbd;

import java.io.IOException;

/**
 * A metadata context beyond the built-in {@code base:allocation}, such as
 * {@code qemu:dirty-bitmap:NAME} (status bit 0 = dirty), which is how change block tracking
 * reaches {@code nbdinfo --map=qemu:dirty-bitmap:NAME} and {@code qemu-img map ... x-dirty-bitmap=}.
 *
 * <p>Must be thread-safe: requests of several connections may ask for extents concurrently.
 */
public interface MetaContext {

    /** The full context name, e.g. {@code qemu:dirty-bitmap:backup-1}. */
    String name();

    /**
     * Reports status extents starting exactly at {@code offsetBytes}, consecutive and in order,
     * until they cover {@code lengthBytes} or the sink returns false. Extents may run past the
     * requested end (the server clips them) but never past the end of the export. Reporting fewer
     * bytes than asked is allowed (the client asks again from where the reply stopped), reporting
     * nothing is an error.
     *
     * @param offsetBytes start, inside the export
     * @param lengthBytes length in bytes, > 0, inside the export
     * @param sink        receives (length, status) pairs
     * @throws IOException or {@link org.blksnap.engine.BlksnapException}: the request fails
     *                     with the matching NBD error
     */
    void extents(long offsetBytes, long lengthBytes, StatusSink sink) throws IOException;

    /** Receives the extents of a {@link MetaContext}. */
    @FunctionalInterface
    interface StatusSink {
        /**
         * @param lengthBytes extent length, > 0
         * @param status      the context's status bits for the extent (u32)
         * @return false to stop early
         */
        boolean extent(long lengthBytes, int status);
    }
}
