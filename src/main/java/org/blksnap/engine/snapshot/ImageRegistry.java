package org.blksnap.engine.snapshot;

import java.util.TreeMap;
import java.util.concurrent.locks.ReentrantLock;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;

/**
 * All live snapshot images by name, {@code blksnap-image<N>} with the lowest free N (the module's
 * minor numbers). Thread-safe: one lock.
 */
public final class ImageRegistry {
    /** Image name prefix. */
    public static final String PREFIX = "blksnap-image";
    private static final int MAX_IMAGES = 1 << 20;

    private final TreeMap<Integer, SnapImage> images = new TreeMap<>();
    private final ReentrantLock lock = new ReentrantLock();

    int allocateNumber() {
        lock.lock();
        try {
            int n = 0;
            for (Integer used : images.keySet()) {
                if (used != n) {
                    break;
                }
                n++;
            }
            if (n >= MAX_IMAGES) {
                throw new BlksnapException(Errno.ENOMEM, "no free image number (" + MAX_IMAGES + " images exist)");
            }
            images.put(n, null);
            return n;
        } finally {
            lock.unlock();
        }
    }

    void register(int number, SnapImage image) {
        lock.lock();
        try {
            images.put(number, image);
        } finally {
            lock.unlock();
        }
    }

    void release(int number) {
        lock.lock();
        try {
            images.remove(number);
        } finally {
            lock.unlock();
        }
    }

    /** The image with that name, as a block device. @throws BlksnapException ENODEV if there is none */
    public BlockDevice get(String name) {
        return image(name);
    }

    /** The name of the original device an image shows. @throws BlksnapException ENODEV if there is no such image */
    public String deviceOf(String imageName) {
        return image(imageName).device();
    }

    private SnapImage image(String name) {
        lock.lock();
        try {
            if (name != null && name.startsWith(PREFIX)) {
                try {
                    SnapImage img = images.get(Integer.parseInt(name.substring(PREFIX.length())));
                    if (img != null) {
                        return img;
                    }
                } catch (NumberFormatException e) {
                    // fall through
                }
            }
            throw new BlksnapException(Errno.ENODEV, "no snapshot image '" + name + "'");
        } finally {
            lock.unlock();
        }
    }


    static int numberOf(String name) {
        return Integer.parseInt(name.substring(PREFIX.length()));
    }
}
