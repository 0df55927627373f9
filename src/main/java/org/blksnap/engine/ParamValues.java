package org.blksnap.engine;

/**
 * One consistent set of the module parameters, as read at one moment. Trackers and snapshots
 * read the set once when they are created, so a run-time change applies to those created
 * afterwards, as with the kernel module's 0644 parameters.
 *
 * @param trackingBlockMinimumShift log2 of the smallest CBT block, in bytes
 * @param trackingBlockMaximumCount most CBT blocks per device, in blocks
 * @param chunkMinimumShift         log2 of the smallest chunk, in bytes
 * @param chunkMaximumCount         most chunks per device, in chunks
 * @param chunkMaximumInCache       chunks kept in each image chunk cache, per device
 * @param freeDiffBufferPoolSize    free chunk buffers kept for reuse, per device
 * @param diffStorageMinimum        size of one storage portion and the low-space threshold basis, in sectors
 */
public record ParamValues(int trackingBlockMinimumShift, int trackingBlockMaximumCount, int chunkMinimumShift,
                          int chunkMaximumCount, int chunkMaximumInCache, int freeDiffBufferPoolSize,
                          long diffStorageMinimum) {
    /** The kernel module's defaults. */
    public static final ParamValues DEFAULTS = new ParamValues(16, 2_097_152, 18, 2_097_152, 32, 128, 2_097_152L);

    /** The value of the parameter with that name. */
    public long get(String name) {
        return switch (Params.Name.of(name)) {
            case TRACKING_BLOCK_MINIMUM_SHIFT -> trackingBlockMinimumShift;
            case TRACKING_BLOCK_MAXIMUM_COUNT -> trackingBlockMaximumCount;
            case CHUNK_MINIMUM_SHIFT -> chunkMinimumShift;
            case CHUNK_MAXIMUM_COUNT -> chunkMaximumCount;
            case CHUNK_MAXIMUM_IN_CACHE -> chunkMaximumInCache;
            case FREE_DIFF_BUFFER_POOL_SIZE -> freeDiffBufferPoolSize;
            case DIFF_STORAGE_MINIMUM -> diffStorageMinimum;
        };
    }

    /** A copy with one parameter changed; validates the name, range and cross-parameter rules. */
    public ParamValues with(String name, long value) {
        Params.Name n = Params.Name.of(name);
        n.check(value);
        ParamValues v = switch (n) {
            case TRACKING_BLOCK_MINIMUM_SHIFT -> new ParamValues((int) value, trackingBlockMaximumCount,
                    chunkMinimumShift, chunkMaximumCount, chunkMaximumInCache, freeDiffBufferPoolSize, diffStorageMinimum);
            case TRACKING_BLOCK_MAXIMUM_COUNT -> new ParamValues(trackingBlockMinimumShift, (int) value,
                    chunkMinimumShift, chunkMaximumCount, chunkMaximumInCache, freeDiffBufferPoolSize, diffStorageMinimum);
            case CHUNK_MINIMUM_SHIFT -> new ParamValues(trackingBlockMinimumShift, trackingBlockMaximumCount,
                    (int) value, chunkMaximumCount, chunkMaximumInCache, freeDiffBufferPoolSize, diffStorageMinimum);
            case CHUNK_MAXIMUM_COUNT -> new ParamValues(trackingBlockMinimumShift, trackingBlockMaximumCount,
                    chunkMinimumShift, (int) value, chunkMaximumInCache, freeDiffBufferPoolSize, diffStorageMinimum);
            case CHUNK_MAXIMUM_IN_CACHE -> new ParamValues(trackingBlockMinimumShift, trackingBlockMaximumCount,
                    chunkMinimumShift, chunkMaximumCount, (int) value, freeDiffBufferPoolSize, diffStorageMinimum);
            case FREE_DIFF_BUFFER_POOL_SIZE -> new ParamValues(trackingBlockMinimumShift, trackingBlockMaximumCount,
                    chunkMinimumShift, chunkMaximumCount, chunkMaximumInCache, (int) value, diffStorageMinimum);
            case DIFF_STORAGE_MINIMUM -> new ParamValues(trackingBlockMinimumShift, trackingBlockMaximumCount,
                    chunkMinimumShift, chunkMaximumCount, chunkMaximumInCache, freeDiffBufferPoolSize, value);
        };
        v.checkConsistent(n.paramName(), value);
        return v;
    }

    /** The smallest chunk, in sectors. */
    public long chunkMinimumSectors() {
        return 1L << (chunkMinimumShift - 9);
    }

    private void checkConsistent(String changed, long value) {
        long twoChunks = 2 * chunkMinimumSectors();
        if (diffStorageMinimum < twoChunks) {
            throw new BlksnapException(Errno.EINVAL, changed + " (" + value + ") would make diff_storage_minimum ("
                    + diffStorageMinimum + " sectors) smaller than two chunks of 2^" + chunkMinimumShift
                    + " bytes (" + twoChunks + " sectors)");
        }
    }
}
