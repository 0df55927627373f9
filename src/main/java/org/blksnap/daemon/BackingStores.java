package org.blksnap.daemon;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import org.blksnap.ctrl.api.Sizes;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;
import org.blksnap.engine.device.BlockDevices;

/**
 * Opens the backing store of a device, the daemon's job, by one set of rules for
 * {@code blksnapd --device}, the config file, the registry and {@code blksnap device add}:
 *
 * <ul>
 *   <li>an existing regular file or block device is served at its own size; a size given with it
 *       must equal that size (EINVAL otherwise: a size is never silently ignored);</li>
 *   <li>a missing file is created sparse at the size given, which must be a multiple of 512; without
 *       a size it is ENOENT, and so is a missing directory (directories are never created);</li>
 *   <li>anything else (a directory, a FIFO, a character device) is EINVAL;</li>
 *   <li>a file created here is deleted again if opening it fails.</li>
 * </ul>
 *
 * Stateless and thread-safe; concurrent creates of one path are the caller's to serialise.
 */
final class BackingStores {
    private static final int SECTOR_BYTES = 512;

    private BackingStores() {
    }

    /**
     * An opened backing store.
     *
     * @param created whether this call created the file (the caller deletes it if it gives up)
     */
    record Opened(BlockDevice device, boolean created) {
    }

    /**
     * Opens (or creates) the backing store of device {@code name}.
     *
     * @param path            absolute path of the file or block device
     * @param createSizeBytes size in bytes to create a missing file with, or 0; an existing store must
     *                        have this size when it is not 0
     * @throws BlksnapException ENOENT a missing file without a size, or a missing directory; EINVAL
     *                          neither a regular file nor a block device, a size that is not a
     *                          multiple of 512 or differs from the store's; EPERM permission denied;
     *                          ENOSPC no room to create it; EIO it cannot be opened. Nothing is left
     *                          behind.
     */
    static Opened open(String name, Path path, long createSizeBytes) {
        return open(name, path, createSizeBytes, true);
    }

    /**
     * As {@link #open(String, Path, long)}; {@code creatable} false for a store that must never be
     * created (a registered device's), so that a missing one is not reported with a hint to give a size.
     */
    static Opened open(String name, Path path, long createSizeBytes, boolean creatable) {
        if (createSizeBytes < 0 || createSizeBytes % SECTOR_BYTES != 0) {
            throw new BlksnapException(Errno.EINVAL, "size of device " + name + " (" + createSizeBytes
                    + " bytes) must be a multiple of " + SECTOR_BYTES);
        }
        boolean created = false;
        try {
            if (!Files.exists(path)) {
                if (createSizeBytes == 0) {
                    throw new BlksnapException(Errno.ENOENT, "backing file " + path + " of device " + name
                            + " does not exist" + (creatable ? " (give a size to create it)" : ""));
                }
                Path parent = path.getParent();
                if (parent != null && !Files.isDirectory(parent)) {
                    throw new BlksnapException(Errno.ENOENT, "directory " + parent + " of device " + name
                            + " does not exist");
                }
                Files.createFile(path);
                created = true; // from here on, a failure deletes the file again (see the catch)
                try (RandomAccessFile raf = new RandomAccessFile(path.toFile(), "rw")) {
                    raf.setLength(createSizeBytes);
                }
            }
            if (!Files.isRegularFile(path) && !BlockDevices.isBlockDevice(path)) {
                throw new BlksnapException(Errno.EINVAL, path + " (device " + name
                        + ") is neither a regular file nor a block device");
            }
            BlockDevice device = BlockDevices.open(path, 0, false);
            if (createSizeBytes > 0 && device.sizeBytes() != createSizeBytes) {
                long actual = device.sizeBytes();
                closeQuietly(device);
                throw new BlksnapException(Errno.EINVAL, path + " (device " + name + ") is " + actual + " bytes ("
                        + Sizes.format(actual) + "), not the " + createSizeBytes + " bytes (" + Sizes.format(createSizeBytes)
                        + ") given; leave out the size to serve it at its own size");
            }
            return new Opened(device, created);
        } catch (IOException | RuntimeException e) {
            if (created) {
                try {
                    Files.deleteIfExists(path);
                } catch (IOException d) {
                    e.addSuppressed(d);
                }
            }
            if (e instanceof BlksnapException b) {
                throw b;
            }
            if (e instanceof NoSuchFileException) {
                throw new BlksnapException(Errno.ENOENT, "backing store " + path + " of device " + name
                        + " does not exist", e);
            }
            if (e instanceof AccessDeniedException) {
                throw new BlksnapException(Errno.EPERM, "backing store " + path + " of device " + name
                        + ": permission denied", e);
            }
            throw new BlksnapException(noSpace(e) ? Errno.ENOSPC : Errno.EIO, "cannot open backing store " + path
                    + " of device " + name + ": " + e.getMessage(), e);
        }
    }

    /** Whether the failure says the filesystem is full. */
    private static boolean noSpace(Exception e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof FileSystemException f && f.getReason() != null && f.getReason().contains("No space left")
                    || t.getMessage() != null && t.getMessage().contains("No space left")) {
                return true;
            }
        }
        return false;
    }

    private static void closeQuietly(BlockDevice device) {
        try {
            device.close();
        } catch (IOException e) {
            // a device just opened and never used: nothing to lose
        }
    }
}
