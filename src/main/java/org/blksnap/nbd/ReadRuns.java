package org.blksnap.nbd;

import java.io.IOException;
import org.blksnap.engine.BlockDevice;

/**
 * How a structured READ is split into data and hole chunks: consecutive runs relative to the
 * request start, from the device's allocation map. Holes shorter than {@link #MIN_HOLE_BYTES} are
 * sent as data (a chunk header costs more than the zeros it saves).
 */
final class ReadRuns {
    static final int MAX_RUNS = 32;
    static final int MIN_HOLE_BYTES = 4096;

    private final int[] start = new int[MAX_RUNS];
    private final int[] length = new int[MAX_RUNS];
    private final boolean[] hole = new boolean[MAX_RUNS];
    private int count;

    int count() {
        return count;
    }

    int startBytes(int i) {
        return start[i];
    }

    int lengthBytes(int i) {
        return length[i];
    }

    boolean hole(int i) {
        return hole[i];
    }

    /**
     * Maps {@code [offsetBytes, offsetBytes+lengthBytes)} of the device.
     *
     * @return the runs, or null when the range is all data or too fragmented to be worth chunks
     */
    static ReadRuns map(BlockDevice device, long offsetBytes, int lengthBytes) throws IOException {
        ReadRuns runs = new ReadRuns();
        boolean[] overflow = {false};
        long[] covered = {0};
        device.mapAllocation(offsetBytes, lengthBytes, (len, isHole) -> {
            int take = (int) Math.min(len, lengthBytes - covered[0]);
            if (take <= 0) {
                return false;
            }
            boolean asHole = isHole && take >= MIN_HOLE_BYTES;
            if (!runs.append((int) covered[0], take, asHole)) {
                overflow[0] = true;
                return false;
            }
            covered[0] += take;
            return covered[0] < lengthBytes;
        });
        if (overflow[0]) {
            return null;
        }
        if (covered[0] < lengthBytes && !runs.append((int) covered[0], (int) (lengthBytes - covered[0]), false)) {
            return null;
        }
        for (int i = 0; i < runs.count; i++) {
            if (runs.hole[i]) {
                return runs;
            }
        }
        return null;
    }

    private boolean append(int at, int bytes, boolean isHole) {
        if (count > 0 && hole[count - 1] == isHole) {
            length[count - 1] += bytes;
            return true;
        }
        if (count == MAX_RUNS) {
            return false;
        }
        start[count] = at;
        length[count] = bytes;
        hole[count] = isHole;
        count++;
        return true;
    }
}
