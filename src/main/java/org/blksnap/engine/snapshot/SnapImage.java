package org.blksnap.engine.snapshot;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ImageInfo;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.diff.DiffArea;
import org.blksnap.engine.tracker.Tracker;
import org.blksnap.util.DirectBuffers;

/**
 * A snapshot image: a read/write block device showing one original device as it was at take.
 * Writes land in the difference storage, never on the original, and mark the original's CBT in both
 * maps (as v3+ does). Discard is accepted as a hint and ignored; write-zeroes writes zeros.
 *
 * <p>Thread-safe. Fails with EIO once the snapshot is corrupted and with ENODEV once it is destroyed.
 */
final class SnapImage implements BlockDevice {
    private final ImageInfo info;
    private final DiffArea area;
    private final Tracker tracker;
    private final int logicalBlockSize;
    private volatile boolean removed;
    private final Sender sender = this::send;

    SnapImage(ImageInfo info, DiffArea area, Tracker tracker, int logicalBlockSize) {
        this.info = info;
        this.area = area;
        this.tracker = tracker;
        this.logicalBlockSize = logicalBlockSize;
    }

    ImageInfo info() {
        return info;
    }

    /** The original device's name. */
    String device() {
        return info.device();
    }

    @Override
    public String name() {
        return info.image();
    }

    @Override
    public long sizeBytes() {
        return info.sizeBytes();
    }

    @Override
    public int logicalBlockSize() {
        return logicalBlockSize;
    }

    void markRemoved() {
        removed = true;
    }


    private void checkPresent() {
        if (removed) {
            throw new BlksnapException(Errno.ENODEV, "image " + info.image() + " was removed (snapshot destroyed)");
        }
    }

    @Override
    public void read(ByteBuffer dst, long offsetBytes) throws IOException {
        checkPresent();
        checkRange(offsetBytes, dst.remaining());
        area.imageRead(dst, offsetBytes);
    }

    /**
     * Copied chunks go out as ranges of the difference storage, the rest as bytes the image read
     * itself (DiffArea.imageSend): never as pages of the original, which may change before they are sent.
     */
    @Override
    public Sender sender() {
        return sender;
    }

    private void send(long offsetBytes, int lengthBytes, ByteSink sink) throws IOException {
        checkPresent();
        checkRange(offsetBytes, lengthBytes);
        area.imageSend(offsetBytes, lengthBytes, sink);
    }

    @Override
    public void write(ByteBuffer src, long offsetBytes) throws IOException {
        checkPresent();
        int n = src.remaining();
        checkRange(offsetBytes, n);
        if (n == 0) {
            return;
        }
        // Marked first: a write that fails halfway may have changed some chunks, and CBT may
        // over-report but must never under-report.
        markCbt(offsetBytes, n);
        area.imageWrite(src, offsetBytes);
    }

    private void markCbt(long offsetBytes, long lengthBytes) {
        long first = offsetBytes / SectorRange.SECTOR_BYTES;
        long end = (offsetBytes + lengthBytes + SectorRange.SECTOR_BYTES - 1) / SectorRange.SECTOR_BYTES;
        try {
            tracker.cbt().markBoth(List.of(new SectorRange(first, end - first)));
        } catch (BlksnapException e) {
            // A corrupted map is rebuilt at the next take, which then reports a new generation.
        }
        // Image writes change the maps outside the device's barrier: the journal reads the epoch
        // after the mark, so a checkpoint that copied the maps before the mark has already moved to
        // a newer epoch, whose record covers it.
        tracker.journal().recordWrite(offsetBytes, lengthBytes);
    }

    @Override
    public void flush() throws IOException {
        checkPresent();
        area.flush();
    }

    @Override
    public void discard(long offsetBytes, long lengthBytes) {
        checkPresent();
        checkRange(offsetBytes, lengthBytes);
    }

    @Override
    public void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) throws IOException {
        checkPresent();
        checkRange(offsetBytes, lengthBytes);
        if (lengthBytes > 0) {
            markCbt(offsetBytes, lengthBytes);
        }
        DirectBuffers.writeZeros(offsetBytes, lengthBytes, area::imageWrite);
    }

    @Override
    public void mapAllocation(long offsetBytes, long lengthBytes, ExtentSink sink) throws IOException {
        checkPresent();
        area.imageMapAllocation(offsetBytes, lengthBytes, sink);
    }

    /** Images are owned by their snapshot; closing one does nothing. */
    @Override
    public void close() {
    }

    @Override
    public String toString() {
        return "SnapImage[" + info.image() + " of " + info.device() + "]";
    }
}
