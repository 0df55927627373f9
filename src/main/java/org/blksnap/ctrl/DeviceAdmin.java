package org.blksnap.ctrl;

import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * The daemon's side of {@code device/add}, {@code device/remove} and {@code devices}: it opens and
 * creates backing stores, keeps the registry of devices added at run time in the data directory,
 * and knows where each device comes from. The control server calls it and never reaches into the
 * daemon otherwise (the daemon depends on this package, not the other way round). Implementations
 * register devices with the engine, which alone judges the engine's rules (a free, well-formed
 * name; EBUSY for a device in a snapshot); the errors they throw are {@link
 * org.blksnap.engine.BlksnapException}s, so they reach the caller with their errno.
 *
 * <p>Implementations must be thread-safe: requests run concurrently on virtual threads.
 */
public interface DeviceAdmin {

    /** Where a device comes from. Written on the wire in lower case. */
    enum Origin {
        /** {@code blksnapd --device}: declared for this run, not kept in the registry. */
        FLAG,
        /** The config file's {@code device} key: declared for this run, not kept in the registry. */
        CONFIG,
        /** disk0, served when no device is declared. */
        DEFAULT,
        /** {@code device add}, now or before a restart: kept in the registry. */
        ADDED;

        /** The wire form: {@code flag}, {@code config}, {@code default}, {@code added}. */
        public String wireName() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /**
     * A device the daemon knows of.
     *
     * @param name        the device name
     * @param path        its backing file or block device
     * @param origin      where it comes from
     * @param sizeBytes   its size in bytes when it was opened; 0 when unavailable
     * @param unavailable null when it is served; else why a registered device is not (its backing
     *                    store was missing or could not be opened at start)
     * @param readOnly    whether it is served read-only over NBD
     */
    record Entry(String name, Path path, Origin origin, long sizeBytes, String unavailable, boolean readOnly) {
        /** A writable device. */
        public Entry(String name, Path path, Origin origin, long sizeBytes, String unavailable) {
            this(name, path, origin, sizeBytes, unavailable, false);
        }
    }

    /**
     * Opens (or creates, sparse, when {@code createSizeBytes > 0} and the file is missing) the
     * backing store, serves it as device {@code name} at once (NBD clients see it right away) and
     * keeps it in the registry. Never half done: on any failure the registry is unchanged, the
     * device is not served, and a file this call created is deleted.
     *
     * @param createSizeBytes size in bytes to create a missing file with, or 0 (must then exist);
     *                        if the store exists, its size must equal it
     * @return the device added
     * @throws org.blksnap.engine.BlksnapException EEXIST the name is taken; EINVAL a malformed name, a
     *         path that is neither a regular file nor a block device, a size that differs from the
     *         existing store's or is not a multiple of 512; ENOENT a missing file without a size, or
     *         a missing directory; EBUSY the store already backs another device; ENOSPC, EIO the store
     *         or the registry cannot be written
     */
    default Entry add(String name, Path path, long createSizeBytes) {
        return add(name, path, createSizeBytes, false);
    }

    /** As {@link #add(String, Path, long)}; {@code readOnly} serves it read-only over NBD, now and after restarts. */
    Entry add(String name, Path path, long createSizeBytes, boolean readOnly);

    /**
     * Stops serving the device (its NBD clients are disconnected once their requests in flight are
     * answered; its tracker goes with it) and drops it from the registry; the backing store is left
     * as it is. A device given by a flag comes back at the next start if the flag is still given.
     *
     * @param force remove it even while it is in a snapshot (the snapshot is then corrupted with an
     *              ENODEV event)
     * @throws org.blksnap.engine.BlksnapException ENXIO no such device; EBUSY it is in a snapshot and
     *         {@code force} is false (nothing changes); EIO the registry could not be written
     */
    void remove(String name, boolean force);

    /** Every device the daemon knows of (served or registered but unavailable), in name order. */
    List<Entry> entries();

    /**
     * Checks, before it is appended, that difference storage at {@code storage} does not lie on a
     * filesystem served by this daemon from one of its own devices or images (its copy-on-write
     * writes would come back through our own tracker and deadlock). Called without engine locks.
     *
     * @throws org.blksnap.engine.BlksnapException EINVAL it does
     */
    default void checkStorage(Path storage) {
    }
}
