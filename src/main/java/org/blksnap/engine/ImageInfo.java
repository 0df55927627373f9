package org.blksnap.engine;

import java.util.UUID;

/**
 * One snapshot image: the device it shows, the image's own name, its snapshot and size.
 *
 * @param device     original device name
 * @param image      image name, {@code blksnap-image<N>}
 * @param snapshotId the snapshot that owns the image
 * @param sizeBytes  image capacity in bytes (the device size at take)
 */
public record ImageInfo(String device, String image, UUID snapshotId, long sizeBytes) {
}
