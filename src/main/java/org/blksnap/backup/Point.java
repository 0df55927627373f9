package org.blksnap.backup;

/**
 * One restore point of one device, as its manifest records it ({@link ManifestDescriptor}).
 * Immutable.
 *
 * @param id             {@code yyyyMMdd-HHmmss-xxxxxx} (UTC time of the backup, 6 random hex digits)
 * @param time           ISO-8601 UTC instant the backup started
 * @param kind           {@code full} or {@code incremental}
 * @param reason         why a full point was full, or what an incremental was based on
 * @param generation     the tracker's CBT generation id at the take
 * @param snapNumber     the tracker's snapshot number at the take
 * @param sizeBytes      the device's size
 * @param chunkSizeBytes chunk size (the tracking block size at the backup)
 * @param fanout         refs per index node
 * @param root           the root ref of the index, 120 hex digits ({@link NodeDescriptor})
 * @param bytesRead      bytes read from the image for this point
 * @param newBytes       bytes this point added to packs (blob headers included)
 * @param seconds        wall-clock duration of this device's backup
 * @param host           the host whose daemon the device belongs to (manifest format 2); empty for
 *                       a point of format 1, which did not record it
 */
public record Point(String id, String device, String time, String kind, String reason, String generation,
                    long snapNumber, long sizeBytes, int chunkSizeBytes, int fanout, String root, long bytesRead,
                    long newBytes, double seconds, String host) {
    public Point {
        host = host == null ? "" : host;
    }

    /** The geometry of this point's index. */
    Geometry geometry() {
        return new Geometry(sizeBytes, chunkSizeBytes, fanout);
    }
}
