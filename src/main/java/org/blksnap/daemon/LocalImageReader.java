package org.blksnap.daemon;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.blksnap.backup.ImageReader;
import org.blksnap.backup.RepositoryException;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;

/**
 * A snapshot image read by the daemon's resident backup agent straight from the engine, not through
 * the daemon's own NBD server: the same reads an NBD client would get (the image's read path),
 * without encoding, a socket and a second copy. Thread-safe (the engine's image reads are).
 */
final class LocalImageReader implements ImageReader {
    private final String name;
    private final BlockDevice image;

    private LocalImageReader(String name, BlockDevice image) {
        this.name = name;
        this.image = image;
    }

    /**
     * The opener the agent's jobs use: the engine's image of that name (the URI is not needed), and
     * the engine's CBT map of a device, read whole in one call instead of pieces of JSON through
     * the control API (the same bytes: both read the tracker's map as the take left it).
     */
    static ImageReader.Opener opener(Blksnap engine) {
        return new ImageReader.Opener() {
            @Override
            public ImageReader open(String image, String uri) throws RepositoryException {
                try {
                    return new LocalImageReader(image, engine.image(image));
                } catch (BlksnapException e) {
                    throw new RepositoryException(RepositoryException.Code.NBD, "cannot open image " + image + ": "
                            + e.errno() + ": " + e.getMessage(), e);
                }
            }

            @Override
            public byte[] cbtMap(String device, int blockCount) throws RepositoryException {
                try {
                    return engine.trackerReadCbtMap(device, 0, blockCount);
                } catch (BlksnapException e) {
                    throw new RepositoryException(RepositoryException.Code.NBD, "cannot read the CBT map of " + device
                            + ": " + e.errno() + ": " + e.getMessage(), e);
                }
            }
        };
    }

    @Override
    public long sizeBytes() {
        return image.sizeBytes();
    }

    @Override
    public void read(long offsetBytes, ByteBuffer dst) throws RepositoryException {
        int length = dst.remaining();
        try {
            image.read(dst, offsetBytes);
        } catch (IOException | BlksnapException e) {
            throw new RepositoryException(RepositoryException.Code.NBD, "reading " + length + " bytes of image " + name
                    + " at offset " + offsetBytes + " failed: " + e.getMessage(), e);
        }
    }

    /** Nothing to close: the image belongs to its snapshot. */
    @Override
    public void close() {
    }
}
