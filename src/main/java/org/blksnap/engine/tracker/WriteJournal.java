package org.blksnap.engine.tracker;

/**
 * What a tracker tells before a write is acknowledged, so that the change survives a crash: the
 * persistent implementation (in {@code engine.state}) durably records the touched regions the first
 * time they are written in a checkpoint epoch. Called inside the device's take barrier, right after
 * the CBT mark; also after an image write has marked both maps.
 *
 * <p>Implementations are thread-safe, never throw (a failure to record degrades the persistence,
 * never the write) and cost next to nothing for regions already recorded.
 */
@FunctionalInterface
public interface WriteJournal {
    /** Nothing is recorded: trackers in memory only. */
    WriteJournal NONE = (offsetBytes, lengthBytes) -> { };

    /**
     * Returns once the regions touched by {@code [offsetBytes, offsetBytes + lengthBytes)} are
     * durably recorded for the current epoch (or recording has failed and the state was invalidated).
     */
    void recordWrite(long offsetBytes, long lengthBytes);
}
