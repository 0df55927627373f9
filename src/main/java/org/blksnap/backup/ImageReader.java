package org.blksnap.backup;

import java.nio.ByteBuffer;

/**
 * Where a backup reads a snapshot image: over NBD ({@link NbdClient}, what a separate process uses),
 * or in the process that serves the image (the daemon's resident backup agent reads the engine's
 * image directly, without a trip through its own NBD server). Implementations must allow
 * concurrent {@link #read}s from several threads.
 */
public interface ImageReader extends AutoCloseable {
    /** The image's size in bytes. */
    long sizeBytes();

    /**
     * Reads {@code dst.remaining()} bytes (at most 32 MiB) at {@code offsetBytes} into {@code dst}.
     *
     * @throws RepositoryException NBD the image cannot be read there (the error names the image)
     */
    void read(long offsetBytes, ByteBuffer dst) throws RepositoryException;

    @Override
    void close();

    /**
     * How a backup reaches what the daemon holds: opens the image it reads (given the image's
     * export name and NBD URI) and, in the daemon's own process, reads a device's CBT map.
     */
    @FunctionalInterface
    interface Opener {
        /** Over NBD at the URI; CBT maps through the control API. */
        Opener NBD = (image, uri) -> NbdClient.connect(uri);

        ImageReader open(String image, String uri) throws RepositoryException;

        /**
         * The CBT map of {@code device} (one byte per tracking block, {@code blockCount} of them)
         * read in this process, or null when this opener cannot (the caller then asks the
         * daemon's control API, as a separate process must).
         *
         * @throws RepositoryException NBD: the map could not be read (named)
         */
        default byte[] cbtMap(String device, int blockCount) throws RepositoryException {
            return null;
        }
    }
}
