package org.blksnap.engine.diff;

import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntSupplier;
import org.blksnap.util.DirectBuffers;

/**
 * Free chunk buffers of one diff area, kept for reuse up to free_diff_buffer_pool_size (read live, as
 * the module read it at each release). Buffers are direct and 4 KiB aligned, so that O_DIRECT
 * devices can read into them.
 *
 * <p>Thread-safe and lock-free. Forbidden outcome (tested): more than the limit kept free.
 */
final class DiffBufferPool {
    private static final int ALIGNMENT = 4096;

    private final int bufferBytes;
    private final IntSupplier limit;
    private final ConcurrentLinkedDeque<ByteBuffer> free = new ConcurrentLinkedDeque<>();
    private final AtomicInteger freeCount = new AtomicInteger();
    private final AtomicInteger allocated = new AtomicInteger();

    DiffBufferPool(int bufferBytes, IntSupplier limit) {
        this.bufferBytes = bufferBytes;
        this.limit = limit;
    }

    /** A cleared buffer of one chunk. */
    ByteBuffer acquire() {
        ByteBuffer b = free.pollFirst();
        if (b != null) {
            freeCount.decrementAndGet();
            return b.clear();
        }
        allocated.incrementAndGet();
        return DirectBuffers.allocateAligned(bufferBytes, ALIGNMENT);
    }

    /** Returns a buffer: kept if the pool has room, else dropped. */
    void release(ByteBuffer b) {
        if (b == null) {
            return;
        }
        int max = limit.getAsInt();
        while (true) {
            int n = freeCount.get();
            if (n >= max) {
                return;
            }
            if (freeCount.compareAndSet(n, n + 1)) {
                free.addFirst(b);
                return;
            }
        }
    }

    int freeCount() {
        return freeCount.get();
    }

    /** Buffers allocated over the pool's life. */
    int allocatedCount() {
        return allocated.get();
    }

    void clear() {
        while (free.pollFirst() != null) {
            freeCount.decrementAndGet();
        }
    }
}
