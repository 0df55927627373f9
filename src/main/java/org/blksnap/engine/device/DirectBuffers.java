package org.blksnap.engine.device;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/** Aligned direct buffers, for O_DIRECT I/O. */
public final class DirectBuffers {
    private DirectBuffers() {
    }

    /** A direct buffer of {@code capacityBytes} whose address is a multiple of {@code alignmentBytes}. */
    public static ByteBuffer allocateAligned(int capacityBytes, int alignmentBytes) {
        ByteBuffer raw = ByteBuffer.allocateDirect(capacityBytes + alignmentBytes);
        int pad = (alignmentBytes - raw.alignmentOffset(0, alignmentBytes)) % alignmentBytes;
        return raw.slice(pad, capacityBytes);
    }

    static boolean isAligned(ByteBuffer buf, int alignmentBytes) {
        long address = MemorySegment.ofBuffer(buf).address();
        return address % alignmentBytes == 0;
    }
}
