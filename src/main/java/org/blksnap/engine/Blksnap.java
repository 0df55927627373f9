package org.blksnap.engine;

import java.nio.file.Path;
import java.util.List;
import java.util.UUID;

/**
 * The blksnap engine: what the kernel module is, as a library. It owns the original devices
 * (registered by name), their trackers and CBT maps, the snapshots with their difference storage
 * and events, and the snapshot images. It knows nothing of NBD or of the command line.
 *
 * <p>Created by {@code org.blksnap.engine.module.BlksnapModule.init}. Operations mirror the module's ioctls; each throws {@link BlksnapException} with the errno of
 * the spec's tables. All methods are thread-safe. I/O reaches devices through {@link #device(String)}
 * (the filtered original: its writes are tracked and copied-on-write) and {@link #image(String)}.
 */
public interface Blksnap extends AutoCloseable {


    /** The engine version, 1.0.0.0. */
    Version version();

    /** The live module parameters. */
    Params params();

    // ---- devices ------------------------------------------------------------------------------

    /**
     * Serves {@code backing} as the original device {@code name}. The engine takes ownership and
     * closes it at {@link #removeDevice} or exit.
     *
     * @throws BlksnapException EEXIST if the name is taken, EINVAL for an empty or malformed name
     */
    void addDevice(String name, BlockDevice backing);

    /**
     * Removes a device: from now on its I/O fails with ENODEV, its tracker is detached (CBT history
     * lost), listeners hear {@link EngineListener#deviceRemoved} (a server ends its clients there,
     * while the backing device is still open, so requests in flight complete), and then the backing
     * device is closed. With {@code force}, a device in a snapshot is removed as if it were pulled
     * out: the snapshot is marked corrupted (ENODEV event).
     *
     * @param force remove it even while it is in a snapshot (created or taken)
     * @throws BlksnapException ENXIO if there is no such device; EBUSY if it is in a snapshot and
     *                          {@code force} is false (nothing changes)
     */
    void removeDevice(String name, boolean force);

    /** Device names, sorted. */
    List<String> deviceNames();

    /**
     * The original device: reads pass through; writes, discards and write-zeroes go through the
     * tracker (CBT mark, copy-on-write) before they reach the backing device.
     *
     * @throws BlksnapException ENXIO if there is no such device
     */
    BlockDevice device(String name);

    /**
     * A snapshot image: reads show the device as it was at take; writes land in the difference
     * storage. Once the snapshot is corrupted every read and write fails with EIO; once it is
     * destroyed, with ENODEV.
     *
     * @throws BlksnapException ENODEV if there is no such image
     */
    BlockDevice image(String imageName);

    /** Registers a listener for images and devices coming and going. */
    void addListener(EngineListener listener);

    void removeListener(EngineListener listener);

    // ---- trackers (TRACKER_* ioctls) -----------------------------------------------------------

    /** CBT info for every device with a tracker, in device-name order. */
    List<CbtInfo> trackerCollect();

    /** CBT info of one device. ENXIO no device, ENODATA no tracker. */
    CbtInfo cbtInfo(String device);

    /**
     * Copies {@code lengthBlocks} bytes of the read map from block {@code offsetBlocks}, fewer at the
     * end of the map, none past it.
     *
     * @throws BlksnapException ENXIO no device; ENODATA no tracker, or offset past the map; EPERM the
     *                          device is not in a taken snapshot; EFAULT the CBT map is corrupted
     */
    byte[] trackerReadCbtMap(String device, long offsetBlocks, int lengthBlocks);

    /**
     * Marks the ranges changed in both maps (they show as changed in the current read map and in the
     * next one). {@code deviceOrImage} may name an original device or one of its images.
     *
     * @throws BlksnapException ENODEV no such device/image or no tracker; EINVAL a range past the end
     *                          (ranges before it stay marked)
     */
    void trackerMarkDirty(String deviceOrImage, List<SectorRange> ranges);

    /**
     * Detaches the tracker; its CBT history is lost.
     *
     * @throws BlksnapException ENXIO no device; ENODATA no tracker; EBUSY the device is in a snapshot
     */
    void trackerRemove(String device);

    // ---- snapshots (SNAPSHOT_* ioctls) ---------------------------------------------------------

    /**
     * Creates a snapshot of the devices (attaching trackers where needed; they then stay attached).
     * Queues the first low_free_space event asking for diff_storage_minimum sectors.
     *
     * @throws BlksnapException EINVAL empty list or duplicate; ENXIO unknown device; EBUSY a device is
     *                          already in a snapshot
     */
    UUID snapshotCreate(List<String> devices);

    /**
     * Appends storage to the snapshot's difference storage, before or after take.
     *
     * @throws BlksnapException ESRCH unknown snapshot; EINVAL a size that is not a multiple of 512, a
     *                          path that is neither a file nor a block device, bad ranges (outside the
     *                          file, overlapping each other or storage already appended, a device's own
     *                          backing store without explicit ranges); ENOENT a missing file without a
     *                          size, or a missing directory; ENOSPC/EIO the path cannot be opened or created.
     *                          A rejected append changes nothing.
     */
    void snapshotAppendStorage(UUID id, StorageSpec storage);

    /**
     * Takes the snapshot: one barrier across all its devices; then images appear.
     *
     * @throws BlksnapException ESRCH unknown; EALREADY already taken; ENODEV no devices; EFAULT no
     *                          storage appended (the snapshot is destroyed, as in v1); EIO/other if a
     *                          hook failed (the snapshot stays created)
     */
    void snapshotTake(UUID id, TakeHooks hooks);

    /** Ids of all live snapshots, in creation order. */
    List<UUID> snapshotCollect();

    /**
     * Images of a taken snapshot, in device order.
     *
     * @throws BlksnapException ESRCH unknown; ENODEV not taken
     */
    List<ImageInfo> snapshotCollectImages(UUID id);

    /**
     * Waits up to {@code timeoutMillis} real milliseconds for the snapshot's next event and removes it.
     *
     * @throws BlksnapException ESRCH unknown or destroyed (also when destroyed during the wait);
     *                          ENOENT timeout; EINTR interrupted; EINVAL negative timeout
     */
    SnapshotEvent snapshotWaitEvent(UUID id, long timeoutMillis);

    /**
     * Destroys the snapshot: images first, then the diff areas and the storage; trackers stay
     * attached and keep tracking. Wakes event waiters. Never touches original data.
     *
     * @throws BlksnapException ENODEV unknown id (as v1)
     */
    void snapshotDestroy(UUID id);

    // ---- status ------------------------------------------------------------------------------

    /** A consistent-enough view of everything, for the status endpoint. */
    Status status();

    /**
     * Exit: destroys every snapshot (images first), detaches every tracker and closes every device,
     * in reverse order of init. Keeps the first error and adds the rest as suppressed. Idempotent.
     */
    @Override
    void close();

    /** Whether a path is the backing store of a served device (storage must not silently reuse it). */
    boolean isBackingPath(Path path);
}
