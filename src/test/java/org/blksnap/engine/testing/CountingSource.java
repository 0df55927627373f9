package org.blksnap.engine.testing;

import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicInteger;
import org.blksnap.engine.BlockDevice;

/**
 * A {@link BlockDevice.ByteSource} for tests of receivers: hands the bytes of an array in order, in
 * as many reads as the receiver makes, and counts the reads. Not thread-safe: one receive.
 */
public final class CountingSource implements BlockDevice.ByteSource {
    private final byte[] bytes;
    private final AtomicInteger calls;
    private int at;

    /** Hands {@code bytes}; counts every read in {@code calls}. */
    public CountingSource(byte[] bytes, AtomicInteger calls) {
        this.bytes = bytes;
        this.calls = calls;
    }

    @Override
    public void readFully(ByteBuffer dst) {
        calls.incrementAndGet();
        int n = dst.remaining();
        dst.put(bytes, at, n);
        at += n;
    }
}
