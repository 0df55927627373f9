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
    private volatile CbtMap cbt;
    private volatile DiffArea diffArea;
    private volatile UUID owner;

    public Tracker(String device, CbtMap cbt) {
        this.device = device;
        this.cbt = cbt;
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
     * it, silently unprotecting the snapshot).
     */
    void beforeWrite(long offsetBytes, long lengthBytes) {
        cbt.mark(offsetBytes, lengthBytes);
        DiffArea area = diffArea;
        if (area != null) {
            area.copyOnWrite(offsetBytes, lengthBytes);
        }
    }
}
