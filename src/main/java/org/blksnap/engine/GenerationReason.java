package org.blksnap.engine;

/**
 * Why the current CBT generation of a tracker started. A generation other than the one a backup
 * tool remembers means its history is lost and the next backup must be a full one; the reason says
 * why. The names are stable: the control API and the CLI report them as they are.
 */
public enum GenerationReason {
    /** The tracker was attached to a device that had none (the first snapshot of the device). */
    NEW_TRACKER,
    /** The device was tracked before, but its saved state (the checkpoint) was not found. */
    STATE_MISSING,
    /** The saved state was torn, truncated, corrupted or of an unknown version. */
    STATE_CORRUPT,
    /** The device's size differs from the size the map was built for (found at start or at take). */
    SIZE_CHANGED,
    /** After a clean stop, the backing file or device is not the same any more (inode, times, ...). */
    BACKING_CHANGED,
    /** A write fell outside the map, which was flagged corrupted and rebuilt at take. */
    MAP_CORRUPTED,
    /** The snapshot number would have reached 256: both maps were zeroed and numbering restarted. */
    NUMBER_WRAPPED,
    /** The write journal could not be written, so the state was invalidated (found after a crash). */
    JOURNAL_FAILED,
    /** The checkpoint at a take could not be written, so the state was invalidated (found after a crash). */
    CHECKPOINT_FAILED
}
