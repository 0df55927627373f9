package org.blksnap.daemon;

import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.CbtInfo;
import org.blksnap.nbd.MetaContext;

/**
 * CBT as an NBD metadata context: {@code qemu:dirty-bitmap:blksnap:<generation-uuid>:<S>} marks
 * dirty (status bit 0) exactly the tracking blocks whose read-map value is greater than S, i.e.
 * changed since snapshot number S of that generation (S = 0: since tracking began). A name with
 * another generation does not resolve, so a client holding a stale generation gets an error
 * instead of a wrong map. Answers are read from the engine on every request (the read map does not
 * change while the snapshot is held).
 */
final class CbtContext implements MetaContext {
    static final String PREFIX = "qemu:dirty-bitmap:blksnap:";
    static final int DIRTY = 1;
    /** Most map bytes read for one BLOCK_STATUS answer (the client asks again for the rest). */
    static final int MAX_BLOCKS_PER_ANSWER = 1 << 20;

    private final Blksnap engine;
    private final String device;
    private final String name;
    private final int since;
    private final long blockBytes;
    private final long sizeBytes;

    private CbtContext(Blksnap engine, String device, String name, int since, long blockBytes, long sizeBytes) {
        this.engine = engine;
        this.device = device;
        this.name = name;
        this.since = since;
        this.blockBytes = blockBytes;
        this.sizeBytes = sizeBytes;
    }

    /** The context names for S = 0 .. snapNumber-1 of the current generation; none without a tracker. */
    static List<String> names(Blksnap engine, String device) {
        CbtInfo info;
        try {
            info = engine.cbtInfo(device);
        } catch (BlksnapException e) {
            return List.of();
        }
        List<String> out = new ArrayList<>();
        for (int s = 0; s < info.snapNumber(); s++) {
            out.add(PREFIX + info.generationId() + ":" + s);
        }
        return out;
    }

    /** The context for an exact name, or null if it is not one of {@link #names}. */
    static MetaContext resolve(Blksnap engine, String device, String name, long sizeBytes) {
        if (!name.startsWith(PREFIX)) {
            return null;
        }
        String rest = name.substring(PREFIX.length());
        int colon = rest.lastIndexOf(':');
        if (colon < 0) {
            return null;
        }
        UUID gen;
        int s;
        try {
            gen = UUID.fromString(rest.substring(0, colon));
            s = Integer.parseInt(rest.substring(colon + 1));
        } catch (IllegalArgumentException e) {
            return null;
        }
        CbtInfo info;
        try {
            info = engine.cbtInfo(device);
        } catch (BlksnapException e) {
            return null;
        }
        if (!gen.equals(info.generationId()) || s < 0 || s >= info.snapNumber()) {
            return null;
        }
        return new CbtContext(engine, device, name, s, info.blockSizeBytes(), Math.min(sizeBytes, info.capacityBytes()));
    }

    @Override
    public String name() {
        return name;
    }

    private long blockIndex(long offsetBytes) {
        return offsetBytes / blockBytes;
    }

    @Override
    public void extents(long offsetBytes, long lengthBytes, StatusSink sink) {
        long end = Math.min(sizeBytes, offsetBytes + lengthBytes);
        if (offsetBytes >= end) {
            sink.extent(lengthBytes, 0);
            return;
        }
        long first = blockIndex(offsetBytes);
        long last = blockIndex(end - 1);
        int count = (int) Math.min(MAX_BLOCKS_PER_ANSWER, last - first + 1);
        byte[] map = engine.trackerReadCbtMap(device, first, count);
        long pos = offsetBytes;
        long runStart = pos;
        int runStatus = -1;
        for (int i = 0; i < map.length; i++) {
            long blockEnd = Math.min(sizeBytes, (first + i + 1) * blockBytes);
            int status = Byte.toUnsignedInt(map[i]) > since ? DIRTY : 0;
            if (runStatus != -1 && status != runStatus) {
                if (!sink.extent(pos - runStart, runStatus)) {
                    return;
                }
                runStart = pos;
            }
            runStatus = status;
            pos = blockEnd;
        }
        if (runStatus != -1 && pos > runStart) {
            sink.extent(pos - runStart, runStatus);
        }
    }
}
