package org.blksnap.engine.tracker;

import java.util.UUID;
import org.blksnap.engine.diff.DiffArea;

/**
 * The per-device state of blksnap: the CBT map, the snapshot the device belongs to, and, while
 * that snapshot is taken, its diff area. Attached when the device first enters a snapshot; stays
 * attached (and keeps tracking) after the snapshot is destroyed, until removed.
 *
 * <p>Thread-safety: fields are volatile; they change only while the device's barrier is closed
 * (or under the engine's control lock for {@code owner}), and writers read them inside the barrier.
 */
public final class Tracker {
    private final String device;
    private final WriteJournal journal;
    private volatile CbtMap cbt;
    private volatile boolean resetUnreported;
    private volatile DiffArea diffArea;
    private volatile UUID owner;

    public Tracker(String device, CbtMap cbt) {
        this(device, cbt, WriteJournal.NONE);
    }

    /** A tracker whose writes are recorded in {@code journal} before they reach the original. */
    public Tracker(String device, CbtMap cbt, WriteJournal journal) {
        this.device = device;
        this.cbt = cbt;
        this.journal = journal;
    }

    /** Where writes are recorded before they are acknowledged ({@link WriteJournal#NONE} in memory only). */
    public WriteJournal journal() {
        return journal;
    }

    /**
     * Whether the generation was reset (other than by a new tracker) and no snapshot was told yet;
     * the engine queues a {@code generation_reset} event into the next snapshot created over the
     * device and clears it (under its control lock).
     */
    public boolean resetUnreported() {
        return resetUnreported;
    }

    public void setResetUnreported(boolean unreported) {
        this.resetUnreported = unreported;
    }

    public String device() {
        return device;
    }

    public CbtMap cbt() {
        return cbt;
    }

    /** Replaces the map (reset at take); barrier closed. */
    public void replaceCbt(CbtMap map) {
        this.cbt = map;
    }

    /** The diff area while a snapshot is taken, else null. */
    public DiffArea diffArea() {
        return diffArea;
    }

    /** Sets or clears the diff area; barrier closed. */
    public void setDiffArea(DiffArea area) {
        this.diffArea = area;
    }

    /** The snapshot the device is in, or null. */
    public UUID owner() {
        return owner;
    }

    public void setOwner(UUID snapshot) {
        this.owner = snapshot;
    }

    /**
     * The filter: marks CBT, then copies the touched chunks if a snapshot is taken. Called inside the
     * barrier, before the write reaches the original. COW runs even if the CBT mark failed (v1 skipped
     * it, silently unprotecting the snapshot). The journal records the touched regions after the mark
     * and before the write goes on, so a checkpoint (which copies the maps with the barrier closed and
     * starts a new epoch) either holds the mark or the journal has the region in a newer epoch.
     */
    void beforeWrite(long offsetBytes, long lengthBytes) {
        cbt.mark(offsetBytes, lengthBytes);
        journal.recordWrite(offsetBytes, lengthBytes);
        DiffArea area = diffArea;
        if (area != null) {
            area.copyOnWrite(offsetBytes, lengthBytes);
        }
    }
}
