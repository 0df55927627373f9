package org.blksnap.engine.diff;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.blksnap.engine.BlockDevice;

/**
 * The allocation map of a snapshot image (NBD block status): chunks that are done are data (their
 * snapshot content is in the difference storage); runs of chunks that are not done report the
 * original's allocation. A chunk that becomes done while the original is being asked is reported as
 * data, never as a hole.
 *
 * <p>Thread-safe: it holds no state of its own and takes no lock; the original is asked without any
 * lock, and the done bits are read again before a hole is reported.
 */
final class ImageAllocationMap {
    private final ChunkGeometry geometry;
    private final DoneBitmap done;
    private final BlockDevice original;

    ImageAllocationMap(ChunkGeometry geometry, DoneBitmap done, BlockDevice original) {
        this.geometry = geometry;
        this.done = done;
        this.original = original;
    }

    /**
     * Reports consecutive extents from {@code offsetBytes} that together cover at least
     * {@code lengthBytes} (the last may go on to its chunk's end, never past the device's end), in
     * order, until the sink returns false. Runs of done chunks are one data extent each; the
     * original's extents inside a run of chunks not done are passed on, cut at the run's end.
     *
     * @throws IOException the original's allocation query failed
     */
    void map(long offsetBytes, long lengthBytes, BlockDevice.ExtentSink sink) throws IOException {
        for (Extent x : extents(offsetBytes, lengthBytes)) {
            Extent checked = x.hole() && anyDone(x) ? x.asData() : x;
            if (!sink.extent(checked.lengthBytes(), checked.hole())) {
                return;
            }
        }
    }

    /** The extents as seen before the done bits are checked again. */
    List<Extent> extents(long offsetBytes, long lengthBytes) throws IOException {
        long capacity = geometry.capacityBytes();
        long end = Math.min(capacity, offsetBytes + lengthBytes);
        List<Extent> extents = new ArrayList<>();
        long pos = offsetBytes;
        while (pos < end) {
            boolean doneRun = done.isDone(geometry.chunkIndex(pos));
            long runEnd = runEnd(pos, end, doneRun);
            if (doneRun) {
                extents.add(new Extent(pos, runEnd - pos, false));
            } else {
                OriginalExtents fromOriginal = new OriginalExtents(extents, pos, runEnd);
                original.mapAllocation(pos, runEnd - pos, fromOriginal);
                fromOriginal.padToEnd();
            }
            pos = runEnd;
        }
        return extents;
    }

    /**
     * The end of the run of chunks from {@code pos} whose done bit is {@code doneRun}: the first chunk
     * boundary at or after {@code end} (or the device's end), or the start of the first chunk whose
     * bit differs.
     */
    private long runEnd(long pos, long end, boolean doneRun) {
        long runEnd = geometry.chunkEnd(geometry.chunkIndex(pos));
        while (runEnd < end && done.isDone(geometry.chunkIndex(runEnd)) == doneRun) {
            runEnd = geometry.chunkEnd(geometry.chunkIndex(runEnd));
        }
        return runEnd;
    }

    private boolean anyDone(Extent x) {
        for (long i = geometry.chunkIndex(x.offsetBytes()); i <= geometry.chunkIndex(x.endBytes() - 1); i++) {
            if (done.isDone(i)) {
                return true;
            }
        }
        return false;
    }

    /**
     * Receives the original's extents for {@code [nextBytes, limitBytes)}, cuts them at the limit and
     * adds them to the list; whatever the original leaves unreported is data.
     */
    private static final class OriginalExtents implements BlockDevice.ExtentSink {
        private final List<Extent> out;
        private final long limitBytes;
        private long nextBytes;

        OriginalExtents(List<Extent> out, long fromBytes, long limitBytes) {
            this.out = out;
            this.nextBytes = fromBytes;
            this.limitBytes = limitBytes;
        }

        @Override
        public boolean extent(long lengthBytes, boolean hole) {
            long l = Math.min(lengthBytes, limitBytes - nextBytes);
            if (l > 0) {
                out.add(new Extent(nextBytes, l, hole));
                nextBytes += l;
            }
            return nextBytes < limitBytes;
        }

        void padToEnd() {
            if (nextBytes < limitBytes) {
                out.add(new Extent(nextBytes, limitBytes - nextBytes, false));
                nextBytes = limitBytes;
            }
        }
    }
}
