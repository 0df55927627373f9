package org.blksnap.engine;

import java.util.UUID;

/**
 * What TRACKER_COLLECT reports for one tracked device.
 *
 * @param device           device name
 * @param blockSizeBytes   tracking block size, in bytes
 * @param capacityBytes    device capacity the map was built for, in bytes
 * @param blockCount       number of tracking blocks (bytes of the map)
 * @param generationId     random id of this map generation; a new one means the history is lost
 * @param snapNumber       number of the last taken snapshot in this generation (0: none yet)
 * @param generationReason why this generation started
 * @param generationDetail what exactly happened (which file, what was wrong, which field changed); never
 *                         blank (a blank one becomes {@code tracker attached} or the reason's name)
 */
public record CbtInfo(String device, int blockSizeBytes, long capacityBytes, int blockCount, UUID generationId,
                      int snapNumber, GenerationReason generationReason, String generationDetail) {
    public CbtInfo {
        if (generationReason == null) {
            generationReason = GenerationReason.NEW_TRACKER;
        }
        if (generationDetail == null || generationDetail.isBlank()) {
            generationDetail = generationReason == GenerationReason.NEW_TRACKER ? "tracker attached"
                    : generationReason.name();
        }
    }

    /** Info of a generation started by a new tracker (tests and doubles). */
    public CbtInfo(String device, int blockSizeBytes, long capacityBytes, int blockCount, UUID generationId,
                   int snapNumber) {
        this(device, blockSizeBytes, capacityBytes, blockCount, generationId, snapNumber, GenerationReason.NEW_TRACKER,
                null);
    }
}
