package org.blksnap.nbd;

import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import org.blksnap.util.DirectBuffers;

/**
 * Direct, 4096-aligned buffers for request and reply payloads, pooled by power-of-two size class
 * from 4 KiB to 32 MiB, so that steady-state I/O allocates nothing and O_DIRECT devices get
 * aligned memory. Each class keeps at most {@link #RETAINED_BYTES_PER_CLASS} (but at least two
 * buffers); beyond that released buffers are left to the garbage collector. Thread-safe.
 */
final class BufferPool {
    static final int MIN_SHIFT = 12;
    static final int MAX_SHIFT = 25;
    static final int ALIGNMENT_BYTES = 4096;
    static final int RETAINED_BYTES_PER_CLASS = 32 * 1024 * 1024;

    private final ConcurrentLinkedQueue<ByteBuffer>[] free;
    private final AtomicInteger[] retained;

    @SuppressWarnings({"unchecked", "rawtypes"})
    BufferPool() {
        int classes = MAX_SHIFT - MIN_SHIFT + 1;
        free = new ConcurrentLinkedQueue[classes];
        retained = new AtomicInteger[classes];
        for (int i = 0; i < classes; i++) {
            free[i] = new ConcurrentLinkedQueue<>();
            retained[i] = new AtomicInteger();
        }
    }

    /** A buffer with position 0 and limit {@code bytes}; {@code bytes} must be in [0, 32 MiB]. */
    ByteBuffer acquire(int bytes) {
        int cls = sizeClass(bytes);
        ByteBuffer b = free[cls].poll();
        if (b != null) {
            retained[cls].decrementAndGet();
            return b.clear().limit(bytes);
        }
        return DirectBuffers.allocateAligned(1 << (cls + MIN_SHIFT), ALIGNMENT_BYTES).limit(bytes);
    }

    /** Returns a buffer obtained from {@link #acquire}; null is ignored. */
    void release(ByteBuffer b) {
        if (b == null) {
            return;
        }
        int capacity = b.capacity();
        if (Integer.bitCount(capacity) != 1 || capacity < (1 << MIN_SHIFT) || capacity > (1 << MAX_SHIFT)) {
            return;
        }
        int cls = Integer.numberOfTrailingZeros(capacity) - MIN_SHIFT;
        int limit = Math.max(2, RETAINED_BYTES_PER_CLASS / capacity);
        if (retained[cls].incrementAndGet() <= limit) {
            free[cls].offer(b);
        } else {
            retained[cls].decrementAndGet();
        }
    }

    static int sizeClass(int bytes) {
        if (bytes < 0 || bytes > (1 << MAX_SHIFT)) {
            throw new IllegalArgumentException("bytes (" + bytes + ") must be in [0, " + (1 << MAX_SHIFT) + "]");
        }
        int shift = bytes <= 1 ? 0 : 32 - Integer.numberOfLeadingZeros(bytes - 1);
        return Math.max(shift, MIN_SHIFT) - MIN_SHIFT;
    }
}
