package org.blksnap.util;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import org.blksnap.engine.BlockDevice;

/** Aligned direct buffers, for O_DIRECT I/O. */
public final class DirectBuffers {
    private static final int ZERO_BYTES = 1 << 20;
    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(ZERO_BYTES).asReadOnlyBuffer();

    private DirectBuffers() {
    }

    /** A positional write, as {@link BlockDevice#write}. */
    @FunctionalInterface
    public interface PositionalWrite {
        void write(ByteBuffer src, long offsetBytes) throws java.io.IOException;
    }

    /** Writes {@code lengthBytes} of zeros at {@code offsetBytes} through {@code write}, 1 MiB at a time. */
    public static void writeZeros(long offsetBytes, long lengthBytes, PositionalWrite write) throws java.io.IOException {
        long pos = offsetBytes;
        long end = offsetBytes + lengthBytes;
        while (pos < end) {
            ByteBuffer z = ZEROS.duplicate();
            z.limit((int) Math.min(ZERO_BYTES, end - pos));
            int n = z.remaining();
            write.write(z, pos);
            pos += n;
        }
    }

    /** A direct buffer of {@code capacityBytes} whose address is a multiple of {@code alignmentBytes}. */
    public static ByteBuffer allocateAligned(int capacityBytes, int alignmentBytes) {
        ByteBuffer raw = ByteBuffer.allocateDirect(capacityBytes + alignmentBytes);
        int pad = (alignmentBytes - raw.alignmentOffset(0, alignmentBytes)) % alignmentBytes;
        return raw.slice(pad, capacityBytes);
    }

    /** Whether the buffer's address is a multiple of {@code alignmentBytes}. */
    public static boolean isAligned(ByteBuffer buf, int alignmentBytes) {
        long address = MemorySegment.ofBuffer(buf).address();
        return address % alignmentBytes == 0;
    }
}
