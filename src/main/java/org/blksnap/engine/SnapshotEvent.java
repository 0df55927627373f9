package org.blksnap.engine;

/**
 * An event of a snapshot, as SNAPSHOT_WAIT_EVENT returns it.
 */
public sealed interface SnapshotEvent {
    /** v1 event code: 0 low_free_space, 1 corrupted. */
    int code();

    /** Event name: {@code low_free_space} or {@code corrupted}. */
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
}
