package org.blksnap.engine;

import java.util.UUID;

/**
 * An event of a snapshot, as SNAPSHOT_WAIT_EVENT returns it.
 */
public sealed interface SnapshotEvent {
    /** Event code: 0 low_free_space, 1 corrupted (as v1); 2 generation_reset (ours). */
    int code();

    /** Event name: {@code low_free_space}, {@code corrupted} or {@code generation_reset}. */
    String name();

    /** When it was raised, in nanoseconds of {@link System#nanoTime()}. */
    long timeNanos();

    /**
     * The difference storage is running out: free space fell to half of diff_storage_minimum (or
     * the snapshot was just created). The owner should append {@code requestedSectors} more.
     */
    record LowFreeSpace(long timeNanos, long requestedSectors) implements SnapshotEvent {
        @Override
        public int code() {
            return 0;
        }

        @Override
        public String name() {
            return "low_free_space";
        }
    }

    /**
     * A device's copy-on-write failed; the snapshot can no longer show it as it was.
     *
     * @param device the original device
     * @param errno  the positive errno of the failure (28 ENOSPC for an overflow, 5 EIO ...)
     */
    record Corrupted(long timeNanos, String device, int errno) implements SnapshotEvent {
        @Override
        public int code() {
            return 1;
        }

        @Override
        public String name() {
            return "corrupted";
        }
    }

    /**
     * The CBT generation of a device of this snapshot was reset for a reason other than a new
     * tracker: its history is lost and the next backup of the device must be a full one. Queued into
     * the first snapshot created over the device after the reset (for example after a restart that
     * found the saved state corrupted), or into the snapshot whose take reset the map.
     *
     * @param device       the original device
     * @param generationId the new generation
     * @param reason       why it was reset
     * @param detail       what exactly happened
     */
    record GenerationReset(long timeNanos, String device, UUID generationId, GenerationReason reason, String detail)
            implements SnapshotEvent {
        @Override
        public int code() {
            return 2;
        }

        @Override
        public String name() {
            return "generation_reset";
        }
    }
}
