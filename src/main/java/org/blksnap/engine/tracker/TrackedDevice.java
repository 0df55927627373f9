package org.blksnap.engine.tracker;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;

/**
 * An original device as the engine serves it: the filter on its write path. Reads, flushes and
 * allocation queries pass straight to the backing device and never wait. Writes, discards and
 * write-zeroes enter the device's {@link TakeBarrier}, go through the tracker (CBT mark, then
 * copy-on-write) if one is attached, and only then reach the backing device.
 *
 * <p>Thread-safe. The barrier exists whether or not a tracker is attached, so a take can drain every
 * write in flight, including ones that started before the tracker was attached.
 */
public final class TrackedDevice implements BlockDevice {
    private final String name;
    private final BlockDevice backing;
    private final TakeBarrier barrier = new TakeBarrier();
    private volatile Tracker tracker;
    private volatile boolean removed;
    /** The backing device's sender behind {@link #checkPresent()}, or null when it has none. */
    private final Sender sender;

    public TrackedDevice(String name, BlockDevice backing) {
        this.name = name;
        this.backing = backing;
        Sender b = backing.sender();
        this.sender = b == null ? null : (offsetBytes, lengthBytes, sink) -> {
            checkPresent();
            b.send(offsetBytes, lengthBytes, sink);
        };
    }

    @Override
    public String name() {
        return name;
    }

    /** The unfiltered backing device: the engine's own reads of the original use it. */
    public BlockDevice backing() {
        return backing;
    }

    /**
     * Closes the device's take barrier: waits for writes inside to leave and holds back new ones.
     * Returns a stamp for {@link #openBarrier}. See {@link TakeBarrier#close()}.
     */
    public long closeBarrier() {
        return barrier.close();
    }

    /** Opens the barrier after {@link #closeBarrier()}; never blocks. */
    public void openBarrier(long stamp) {
        barrier.open(stamp);
    }

    /** The attached tracker, or null. */
    public Tracker tracker() {
        return tracker;
    }

    /** Attaches or detaches (null) the tracker, with the barrier closed so no write is half-tracked. */
    public void setTracker(Tracker t) {
        long stamp = barrier.close();
        try {
            this.tracker = t;
        } finally {
            barrier.open(stamp);
        }
    }

    /**
     * After removal every I/O fails with ENODEV, as an image's does once its snapshot is destroyed
     * (a server tells its client the export is going away: NBD_ESHUTDOWN).
     */
    public void markRemoved() {
        removed = true;
    }

    private void checkPresent() {
        if (removed) {
            throw new BlksnapException(Errno.ENODEV, "device " + name + " was removed");
        }
    }

    @Override
    public long sizeBytes() {
        return backing.sizeBytes();
    }

    @Override
    public int logicalBlockSize() {
        return backing.logicalBlockSize();
    }

    @Override
    public int minimumIoBytes() {
        return backing.minimumIoBytes();
    }

    /**
     * The backing device's, behind the removal check, for reads of the live device (a snapshot's image
     * never reads through here). What it hands may change right after (a write that follows), as with
     * any read of a live device.
     */
    @Override
    public Sender sender() {
        return sender;
    }

    @Override
    public void read(ByteBuffer dst, long offsetBytes) throws IOException {
        checkPresent();
        backing.read(dst, offsetBytes);
    }

    /** An operation that changes the device. */
    @FunctionalInterface
    private interface Change {
        void apply() throws IOException;
    }

    /**
     * The filter: inside the barrier, the tracker (if any) marks CBT and copies the touched chunks;
     * only then does the change reach the backing device.
     */
    private void filtered(long offsetBytes, long lengthBytes, Change change) throws IOException {
        checkPresent();
        checkRange(offsetBytes, lengthBytes);
        long stamp = barrier.enter();
        try {
            // Again inside: a device being saved at exit is marked removed and then drained by a
            // barrier close; a write that passed the first check must not slip in after the save.
            checkPresent();
            Tracker t = tracker;
            if (t != null) {
                t.beforeWrite(offsetBytes, lengthBytes);
            }
            change.apply();
        } finally {
            barrier.exit(stamp);
        }
    }

    @Override
    public void write(ByteBuffer src, long offsetBytes) throws IOException {
        filtered(offsetBytes, src.remaining(), () -> backing.write(src, offsetBytes));
    }

    @Override
    public void flush() throws IOException {
        checkPresent();
        backing.flush();
    }

    @Override
    public void discard(long offsetBytes, long lengthBytes) throws IOException {
        filtered(offsetBytes, lengthBytes, () -> backing.discard(offsetBytes, lengthBytes));
    }

    @Override
    public void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) throws IOException {
        filtered(offsetBytes, lengthBytes, () -> backing.writeZeroes(offsetBytes, lengthBytes, mayUnmap));
    }

    @Override
    public boolean fastZeroes() {
        return backing.fastZeroes();
    }

    @Override
    public void mapAllocation(long offsetBytes, long lengthBytes, ExtentSink sink) throws IOException {
        checkPresent();
        backing.mapAllocation(offsetBytes, lengthBytes, sink);
    }


    /** Closes the backing device. */
    @Override
    public void close() throws IOException {
        removed = true;
        backing.close();
    }

    @Override
    public String toString() {
        return "TrackedDevice[" + name + "]";
    }
}
