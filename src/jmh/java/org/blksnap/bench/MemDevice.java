package org.blksnap.bench;

import java.nio.ByteBuffer;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;
import org.blksnap.engine.diff.DiffArea;

/**
 * An in-memory {@link BlockDevice} over one direct buffer, for microbenchmarks that must not
 * measure a file system. Thread-safe for disjoint ranges (each call works on a duplicate).
 */
final class MemDevice implements BlockDevice {
    /** The owner of a benchmark's diff area: a corruption is a broken benchmark, so it throws. */
    static final DiffArea.Owner FAIL_ON_CORRUPTION = new DiffArea.Owner() {
        @Override
        public void deviceCorrupted(String device, Errno errno, String message) {
            throw new IllegalStateException(device + ": " + errno + " " + message);
        }

        @Override
        public Errno corruption() {
            return null;
        }
    };

    private final String name;
    private final ByteBuffer data;

    MemDevice(String name, int sizeBytes) {
        this.name = name;
        this.data = ByteBuffer.allocateDirect(sizeBytes);
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public long sizeBytes() {
        return data.capacity();
    }

    @Override
    public int logicalBlockSize() {
        return 512;
    }

    @Override
    public void read(ByteBuffer dst, long offsetBytes) {
        int n = dst.remaining();
        dst.put(data.duplicate().clear().position((int) offsetBytes).limit((int) offsetBytes + n));
    }

    @Override
    public void write(ByteBuffer src, long offsetBytes) {
        data.duplicate().clear().position((int) offsetBytes).put(src);
    }

    @Override
    public void flush() {
    }

    @Override
    public void discard(long offsetBytes, long lengthBytes) {
    }

    @Override
    public void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) {
        ByteBuffer d = data.duplicate().clear().position((int) offsetBytes);
        for (long i = 0; i < lengthBytes; i++) {
            d.put((byte) 0);
        }
    }

    @Override
    public void close() {
    }
}
