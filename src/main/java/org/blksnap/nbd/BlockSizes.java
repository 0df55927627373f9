package org.blksnap.nbd;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Block size constraints of an export (NBD_INFO_BLOCK_SIZE), validated: an export that states
 * impossible values gets the protocol defaults and one warning, rather than a client that
 * refuses to connect.
 *
 * @param minimumBytes   1 or a power of two up to 64 KiB
 * @param preferredBytes a power of two, >= max(512, minimum)
 * @param maximumBytes   >= preferred, <= 32 MiB
 */
record BlockSizes(int minimumBytes, int preferredBytes, int maximumBytes) {
    private static final Logger LOG = LoggerFactory.getLogger(BlockSizes.class);
    static final int MAX_MINIMUM_BYTES = 64 * 1024;

    static BlockSizes of(Export export) {
        int min = export.minimumBlockBytes();
        int pref = export.preferredBlockBytes();
        int max = Math.min(export.maximumPayloadBytes(), NbdTransmissionDescriptor.MAX_PAYLOAD_BYTES);
        boolean valid = min >= 1 && Integer.bitCount(min) == 1 && min <= MAX_MINIMUM_BYTES
                && Integer.bitCount(pref) == 1 && pref >= Math.max(512, min) && max >= pref;
        if (!valid) {
            LOG.warn("export {}: block sizes minimum {} preferred {} maximum {} are invalid; using 1/4096/{}",
                    export.name(), min, pref, max, NbdTransmissionDescriptor.MAX_PAYLOAD_BYTES);
            return new BlockSizes(1, 4096, NbdTransmissionDescriptor.MAX_PAYLOAD_BYTES);
        }
        return new BlockSizes(min, pref, max);
    }

    /** Whether offset and length are multiples of the minimum block size. */
    boolean aligned(long offsetBytes, long lengthBytes) {
        return minimumBytes == 1 || ((offsetBytes | lengthBytes) & (minimumBytes - 1)) == 0;
    }
}
