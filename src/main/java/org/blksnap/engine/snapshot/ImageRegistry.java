package org.blksnap.engine.snapshot;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;

/**
 * All live snapshot images by name, {@code blksnap-image<N>} with the lowest free N (the module's
 * minor numbers). Thread-safe: one monitor.
 */
public final class ImageRegistry {
    /** Image name prefix. */
    public static final String PREFIX = "blksnap-image";
    private static final int MAX_IMAGES = 1 << 20;

    private final TreeMap<Integer, SnapImage> images = new TreeMap<>();

    synchronized int allocateNumber() {
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
    }

    synchronized void register(int number, SnapImage image) {
        images.put(number, image);
    }

    synchronized void release(int number) {
        images.remove(number);
    }

    /** The image with that name. @throws BlksnapException ENODEV if there is none */
    public synchronized SnapImage get(String name) {
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
    }

    public synchronized List<SnapImage> all() {
        List<SnapImage> out = new ArrayList<>();
        for (SnapImage i : images.values()) {
            if (i != null) {
                out.add(i);
            }
        }
        return out;
    }

    static int numberOf(String name) {
        return Integer.parseInt(name.substring(PREFIX.length()));
    }
}
