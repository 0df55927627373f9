package org.blksnap.engine.diff;

import org.blksnap.engine.ParamValues;
import org.blksnap.engine.SectorRange;

/**
 * How a device is cut into chunks: chunks of 2^{@code chunkShift} bytes from offset 0; the last
 * one may be short. Conversions between byte offsets and chunk indexes are named methods here and
 * nowhere else.
 *
 * <p>Immutable, so thread-safe.
 *
 * @param capacityBytes the device's size, in bytes, >= 0
 * @param chunkShift    log2 of the chunk size in bytes, 0..62
 */
record ChunkGeometry(long capacityBytes, int chunkShift) {
    /**
     * Largest chunk: 2^26 bytes (64 MiB), upstream's {@code chunk_maximum_shift} since v3. v1 had no
     * cap: a small chunk_maximum_count on a large device asked for chunks of 2^40 bytes and more,
     * which no buffer holds (and whose size overflows an int).
     */
    static final int MAX_CHUNK_SHIFT = 26;

    ChunkGeometry {
        if (capacityBytes < 0) {
            throw new IllegalArgumentException("capacityBytes (" + capacityBytes + ") must be >= 0");
        }
        if (chunkShift < 0 || chunkShift > MAX_CHUNK_SHIFT) {
            throw new IllegalArgumentException("chunkShift (" + chunkShift + ") must be >= 0 and <= " + MAX_CHUNK_SHIFT);
        }
    }

    /** The geometry of a device by the module's rule, with the parameters read at take. */
    static ChunkGeometry of(long capacityBytes, int ioMinBytes, ParamValues values) {
        return new ChunkGeometry(capacityBytes, chunkShift(capacityBytes, ioMinBytes, values));
    }

    /**
     * The chunk shift by the module's rule: chunk_minimum_shift, grown while the chunk count is above
     * chunk_maximum_count or a chunk is smaller than the device's minimum I/O size, capped at
     * {@link #MAX_CHUNK_SHIFT} as upstream does since v3 (the count may then exceed chunk_maximum_count:
     * chunk descriptors are made only for chunks that are copied).
     */
    static int chunkShift(long capacityBytes, int ioMinBytes, ParamValues values) {
        int shift = values.chunkMinimumShift();
        while (shift < MAX_CHUNK_SHIFT
                && (chunkCount(capacityBytes, shift) > values.chunkMaximumCount() || (1L << shift) < ioMinBytes)) {
            shift++;
        }
        return shift;
    }

    /** Chunks of 2^shift bytes needed to cover the capacity; the last may be short. */
    static long chunkCount(long capacityBytes, int shift) {
        long size = 1L << shift;
        return (capacityBytes + size - 1) >>> shift;
    }

    /** Chunks that cover the device. */
    long chunkCount() {
        return chunkCount(capacityBytes, chunkShift);
    }

    /** The size of a full chunk, in bytes. */
    int chunkSizeBytes() {
        return 1 << chunkShift;
    }

    /** The size of a full chunk, in sectors: what one region of difference storage holds. */
    long chunkSectors() {
        return (long) chunkSizeBytes() / SectorRange.SECTOR_BYTES;
    }

    /** The chunk holding the byte at {@code offsetBytes}. */
    long chunkIndex(long offsetBytes) {
        return offsetBytes >>> chunkShift;
    }

    /** Where chunk {@code index} starts, in bytes. */
    long chunkStart(long index) {
        return index << chunkShift;
    }

    /** Where chunk {@code index} ends (exclusive), in bytes, never past the device's end. */
    long chunkEnd(long index) {
        return Math.min(chunkStart(index + 1), capacityBytes);
    }

    /** The bytes of chunk {@code index} on the device: a full chunk, or less for the last one. */
    int chunkBytes(long index) {
        return (int) (chunkEnd(index) - chunkStart(index));
    }

    /** Where the byte at {@code offsetBytes} lies inside its chunk, in bytes. */
    int offsetInChunk(long offsetBytes) {
        return (int) (offsetBytes - chunkStart(chunkIndex(offsetBytes)));
    }
}
