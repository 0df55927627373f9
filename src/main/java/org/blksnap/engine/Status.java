package org.blksnap.engine;

import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * The read-only status view of the engine (what sysfs shows for the kernel module, and more).
 *
 * @param version   engine version, for example {@code 1.0.0.0}
 * @param params    module parameters by name
 * @param devices   devices served, with their trackers
 * @param snapshots live snapshots
 */
public record Status(String version, Map<String, Long> params, List<DeviceStatus> devices, List<SnapshotStatus> snapshots) {

    /**
     * @param name         device name
     * @param sizeBytes    capacity in bytes
     * @param tracker      CBT info if a tracker is attached, else null
     * @param snapshotId   the snapshot the device belongs to, or null
     */
    public record DeviceStatus(String name, long sizeBytes, CbtInfo tracker, UUID snapshotId) {
    }

    /**
     * @param id                 snapshot id
     * @param state              {@code created}, {@code taken} or {@code corrupted}
     * @param devices            device names in creation order
     * @param images             images (empty before take)
     * @param capacitySectors    difference storage appended, in sectors
     * @param usedSectors        difference storage filled, in sectors
     * @param requestedSectors   total asked for by low-space events, in sectors
     * @param chunksCopied       chunks stored in the difference storage so far
     * @param pendingEvents      events queued and not yet collected
     * @param corruptedErrno     the errno that corrupted the snapshot, or 0
     * @param createdAtMillis    when it was created, in milliseconds since the epoch (wall clock)
     * @param takenAtMillis      when it was taken (the point in time its images show), in milliseconds
     *                           since the epoch; 0 before take
     */
    public record SnapshotStatus(UUID id, String state, List<String> devices, List<ImageInfo> images,
                                 long capacitySectors, long usedSectors, long requestedSectors, long chunksCopied,
                                 int pendingEvents, int corruptedErrno, long createdAtMillis, long takenAtMillis) {
    }
}
