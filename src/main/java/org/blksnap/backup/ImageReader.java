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

    /** Opens the image a backup reads; given the image's export name and NBD URI. */
    @FunctionalInterface
    interface Opener {
        /** Over NBD at the URI. */
        Opener NBD = (image, uri) -> NbdClient.connect(uri);

        ImageReader open(String image, String uri) throws RepositoryException;
    }
}
