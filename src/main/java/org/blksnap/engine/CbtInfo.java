package org.blksnap.engine;

import java.util.UUID;

/**
 * What TRACKER_COLLECT reports for one tracked device.
 *
 * @param device        device name
 * @param blockSizeBytes tracking block size, in bytes
 * @param capacityBytes device capacity the map was built for, in bytes
 * @param blockCount    number of tracking blocks (bytes of the map)
 * @param generationId  random id of this map generation; a new one means the history is lost
 * @param snapNumber    number of the last taken snapshot in this generation (0: none yet)
 */
public record CbtInfo(String device, int blockSizeBytes, long capacityBytes, int blockCount, UUID generationId,
                      int snapNumber) {
}
