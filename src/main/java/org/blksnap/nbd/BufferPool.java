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
 * <p>Thread-safe and lock-free. Forbidden outcomes (tested): a buffer handed out twice at once;
 * more retained than the caps; a buffer released beyond the caps that stays allocated.
 */
final class BufferPool {
    private static final Logger LOG = LoggerFactory.getLogger(BufferPool.class);
    static final int MIN_SHIFT = 12;
    static final int MAX_SHIFT = 25;
    static final int ALIGNMENT_BYTES = 4096;
    static final int RETAINED_BYTES_PER_CLASS = 32 * 1024 * 1024;
    static final long MAX_RETAINED_BYTES = 128L * 1024 * 1024;

    /** {@link #acquire} found no direct memory within the JVM's limit ({@code -XX:MaxDirectMemorySize}). */
    static final class NoMemoryException extends IOException {
        NoMemoryException(int bytes, OutOfMemoryError cause) {
            super("no direct memory for a buffer of " + bytes + " bytes (-XX:MaxDirectMemorySize reached): "
                    + cause.getMessage(), cause);
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
    /** New buffers beyond this many allocated bytes fail as if the JVM's direct memory limit were reached. */
    private final long maxAllocatedBytes;

    BufferPool() {
        this(Long.MAX_VALUE);
    }

    /** A pool that behaves as if direct memory ran out beyond {@code maxAllocatedBytes} (tests). */
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
     * @throws NoMemoryException when a new buffer is needed and the direct memory limit leaves no room
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
        if (retained[cls].incrementAndGet() <= limit) {
            if (retainedBytes.addAndGet(capacity) <= MAX_RETAINED_BYTES) {
                free[cls].offer(b);
                return;
            }
            retainedBytes.addAndGet(-capacity);
        }
        retained[cls].decrementAndGet();
        free(b);
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
