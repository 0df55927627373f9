package org.blksnap.engine;

import java.nio.file.Path;
import java.time.Duration;

/**
 * Where and how the engine keeps change tracking across restarts and crashes (docs/persistence.md).
 *
 * <p>With a directory, every tracker (its CBT maps, generation id, snapshot numbers, block size and
 * the device size) is checkpointed under {@code directory/trackers/<device>/}, and the first write of
 * every checkpoint epoch into each region of {@code regionBytes} is recorded durably in a small
 * journal before it is acknowledged, so that a tracker restored after a crash never under-reports.
 * {@link #NONE} keeps everything in memory only (a restart loses every tracker), as before.
 *
 * @param directory          the state directory, created if missing; null only for {@link #NONE}
 * @param regionBytes        journal region size in bytes: a power of two from 64 KiB to 1 TiB
 *                           (default {@link #DEFAULT_REGION_BYTES}); bigger regions mean fewer journal
 *                           syncs and more over-report after a crash
 * @param checkpointInterval how often a tracker written since its last checkpoint is checkpointed
 *                           again (default {@link #DEFAULT_CHECKPOINT_INTERVAL}); at least 1 ms
 */
public record Persistence(Path directory, long regionBytes, Duration checkpointInterval) {
    /** Default journal region: 64 MiB. */
    public static final long DEFAULT_REGION_BYTES = 64L << 20;
    /** Default checkpoint interval: 60 seconds. */
    public static final Duration DEFAULT_CHECKPOINT_INTERVAL = Duration.ofSeconds(60);
    /** Smallest region: 64 KiB. */
    public static final long MIN_REGION_BYTES = 64L << 10;
    /** Largest region: 1 TiB. */
    public static final long MAX_REGION_BYTES = 1L << 40;

    /** Trackers live in memory only; nothing is written. */
    public static final Persistence NONE = new Persistence(null, DEFAULT_REGION_BYTES, DEFAULT_CHECKPOINT_INTERVAL);

    /**
     * @throws BlksnapException EINVAL for a region that is not a power of two in range, or an
     *                          interval that is null or shorter than 1 ms
     */
    public Persistence {
        if (regionBytes < MIN_REGION_BYTES || regionBytes > MAX_REGION_BYTES || Long.bitCount(regionBytes) != 1) {
            throw new BlksnapException(Errno.EINVAL, "regionBytes (" + regionBytes + ") must be a power of two from "
                    + MIN_REGION_BYTES + " to " + MAX_REGION_BYTES);
        }
        if (checkpointInterval == null || checkpointInterval.compareTo(Duration.ofMillis(1)) < 0) {
            throw new BlksnapException(Errno.EINVAL, "checkpointInterval (" + checkpointInterval + ") must be at least 1 ms");
        }
    }

    /** Persistence in {@code directory} with the default region and interval. */
    public static Persistence in(Path directory) {
        return new Persistence(directory, DEFAULT_REGION_BYTES, DEFAULT_CHECKPOINT_INTERVAL);
    }

    /** Whether anything is written to disk. */
    public boolean enabled() {
        return directory != null;
    }

    /** log2 of {@link #regionBytes()}. */
    public int regionShift() {
        return Long.numberOfTrailingZeros(regionBytes);
    }
}
