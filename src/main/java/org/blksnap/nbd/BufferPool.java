package org.blksnap.nbd;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Direct, 4096-aligned buffers for request and reply payloads, pooled by power-of-two size class
 * from 4 KiB to 32 MiB, so that steady-state I/O allocates nothing and O_DIRECT devices get
 * aligned memory.
 *
 * <p>Free buffers kept for reuse are capped: per class at most {@link #RETAINED_BYTES_PER_CLASS}
 * (but at least two buffers), and in all at most {@link #MAX_RETAINED_BYTES}. A buffer released
 * beyond the caps is freed at once (each buffer has its own {@link Arena}), not left to the garbage
 * collector, so the pool's native memory is what is in use plus at most the retained cap.
 *
 * <p>The buffers are {@link Arena} memory, which the JVM does not count against
 * {@code -XX:MaxDirectMemorySize}: what bounds them is the server's in-flight budget (buffers in use)
 * and the caps above (free ones). {@link #close()} frees the free buffers, and every buffer released
 * after it, so a closed server holds nothing.
 *
 * <p>Thread-safe and lock-free. Forbidden outcomes (tested): a buffer handed out twice at once;
 * more retained than the caps; a buffer released beyond the caps, or after {@link #close()}, that
 * stays allocated.
 */
final class BufferPool {
    private static final Logger LOG = LoggerFactory.getLogger(BufferPool.class);
    static final int MIN_SHIFT = 12;
    static final int MAX_SHIFT = 25;
    static final int ALIGNMENT_BYTES = 4096;
    static final int RETAINED_BYTES_PER_CLASS = 32 * 1024 * 1024;
    static final long MAX_RETAINED_BYTES = 128L * 1024 * 1024;

    /** {@link #acquire} found no native memory for a new buffer (the system's, or the pool's test limit). */
    static final class NoMemoryException extends IOException {
        NoMemoryException(int bytes, OutOfMemoryError cause) {
            super("no native memory for a buffer of " + bytes + " bytes: " + cause.getMessage(), cause);
        }
    }

    private final ConcurrentLinkedQueue<ByteBuffer>[] free;
    private final AtomicInteger[] retained;
    private final AtomicLong retainedBytes = new AtomicLong();
    private final AtomicLong allocatedBytes = new AtomicLong();
    /** The most {@link #allocatedBytes} ever was (tests and fuzz targets check it against the documented bound). */
    private final AtomicLong peakAllocatedBytes = new AtomicLong();
    /** The arena of every buffer allocated and not freed yet, by the address of its first byte. */
    private final ConcurrentHashMap<Long, Arena> arenas = new ConcurrentHashMap<>();
    /** New buffers beyond this many allocated bytes fail as if the system had no memory left. */
    private final long maxAllocatedBytes;
    private volatile boolean closed;

    BufferPool() {
        this(Long.MAX_VALUE);
    }

    /** A pool that behaves as if native memory ran out beyond {@code maxAllocatedBytes} (tests). */
    @SuppressWarnings({"unchecked", "rawtypes"})
    BufferPool(long maxAllocatedBytes) {
        this.maxAllocatedBytes = maxAllocatedBytes;
        int classes = MAX_SHIFT - MIN_SHIFT + 1;
        free = new ConcurrentLinkedQueue[classes];
        retained = new AtomicInteger[classes];
        for (int i = 0; i < classes; i++) {
            free[i] = new ConcurrentLinkedQueue<>();
            retained[i] = new AtomicInteger();
        }
    }

    /**
     * A buffer with position 0 and limit {@code bytes}; {@code bytes} must be in [0, 32 MiB].
     *
     * @throws NoMemoryException when a new buffer is needed and the system has no memory left (or the test limit is reached)
     */
    ByteBuffer acquire(int bytes) throws NoMemoryException {
        int cls = sizeClass(bytes);
        ByteBuffer b = free[cls].poll();
        if (b != null) {
            retained[cls].decrementAndGet();
            retainedBytes.addAndGet(-b.capacity());
            return b.clear().limit(bytes);
        }
        return allocate(1 << (cls + MIN_SHIFT), bytes).limit(bytes);
    }

    private ByteBuffer allocate(int capacityBytes, int requestedBytes) throws NoMemoryException {
        if (allocatedBytes.get() + capacityBytes > maxAllocatedBytes) {
            throw new NoMemoryException(requestedBytes, new OutOfMemoryError("the pool's test limit of "
                    + maxAllocatedBytes + " bytes is reached"));
        }
        Arena arena = Arena.ofShared();
        MemorySegment segment;
        try {
            segment = arena.allocate(capacityBytes, ALIGNMENT_BYTES);
        } catch (OutOfMemoryError e) {
            arena.close();
            throw new NoMemoryException(requestedBytes, e);
        }
        arenas.put(segment.address(), arena);
        peakAllocatedBytes.accumulateAndGet(allocatedBytes.addAndGet(capacityBytes), Math::max);
        return segment.asByteBuffer();
    }

    /** Returns a buffer obtained from {@link #acquire}, which nobody may use afterwards; null is ignored. */
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
        if (!closed) {
            if (retained[cls].incrementAndGet() <= limit) {
                if (retainedBytes.addAndGet(capacity) <= MAX_RETAINED_BYTES) {
                    free[cls].offer(b);
                    if (closed) {
                        freeRetained(); // close() ran since the check above and may have missed this one
                    }
                    return;
                }
                retainedBytes.addAndGet(-capacity);
            }
            retained[cls].decrementAndGet();
        }
        free(b);
    }

    /**
     * Frees the free buffers now and every buffer released from now on; buffers in use stay valid
     * until released. {@link #acquire} still works (a late request of a closing server gets a fresh
     * buffer, freed when released). Idempotent.
     */
    void close() {
        closed = true;
        freeRetained();
    }

    private void freeRetained() {
        for (int cls = 0; cls < free.length; cls++) {
            for (ByteBuffer b; (b = free[cls].poll()) != null; ) {
                retained[cls].decrementAndGet();
                retainedBytes.addAndGet(-b.capacity());
                free(b);
            }
        }
    }

    private void free(ByteBuffer b) {
        long address = MemorySegment.ofBuffer(b).address() - b.position();
        Arena arena = arenas.remove(address);
        if (arena == null) {
            return; // not ours: the garbage collector frees it
        }
        try {
            arena.close();
            allocatedBytes.addAndGet(-b.capacity());
        } catch (IllegalStateException e) {
            // A thread is still doing I/O on it: the caller released it too early. Keeping it
            // allocated is the safe side; the leak is logged so that it gets fixed.
            LOG.error("a payload buffer of {} bytes was released while in use; it stays allocated", b.capacity(), e);
        }
    }

    /** Native bytes held by buffers of this pool, in use or retained. */
    long allocatedBytes() {
        return allocatedBytes.get();
    }

    /** The highest {@link #allocatedBytes()} so far. */
    long peakAllocatedBytes() {
        return peakAllocatedBytes.get();
    }

    /** Native bytes of the free buffers kept for reuse. */
    long retainedBytes() {
        return retainedBytes.get();
    }

    static int sizeClass(int bytes) {
        if (bytes < 0 || bytes > (1 << MAX_SHIFT)) {
            throw new IllegalArgumentException("bytes (" + bytes + ") must be in [0, " + (1 << MAX_SHIFT) + "]");
        }
        int shift = bytes <= 1 ? 0 : 32 - Integer.numberOfLeadingZeros(bytes - 1);
        return Math.max(shift, MIN_SHIFT) - MIN_SHIFT;
    }
}
