package org.blksnap.engine.device;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Shared read-write mappings of a file, in windows of {@link #WINDOW_BYTES} mapped on first use and
 * kept until {@link #close()}, for {@link FileBlockDevice}'s receiver: a socket read into a window
 * copies the bytes once, straight into the file's pages. Only for files whose pages live in memory
 * (tmpfs): there a page, once mapped, stays mapped and writable, while on a disk file system every
 * write-back makes the next write through the mapping fault again (on ext4 1 MiB writes fell from
 * 2.1 to 1.0-1.3 GB/s that way).
 *
 * <p>At most {@link #MAX_WINDOWS} windows (64 GiB of address space) per file; past that,
 * {@link #slice} says no and writes take the ordinary path.
 *
 * <p>Thread-safe: windows are mapped at most once each (two threads asking for the same new window
 * may both map it; the loser's mapping is unmapped at close). Closing unmaps every window; a
 * receive still running then (the device closed under a write in flight) keeps its window
 * mapped until it ends, after which the close gives up on that window and says so.
 */
final class MappedWindows implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(MappedWindows.class);
    /** Bytes per window; windows start at multiples of it. */
    static final long WINDOW_BYTES = 1L << 30;
    /** Windows a file may have mapped at once. */
    static final int MAX_WINDOWS = 64;
    /**
     * Granules of a window whose page-table entries {@link #slice} fills in one call when a slice
     * covers them whole (a first write into a mapped page otherwise takes one page fault per 4 KiB: a
     * first 1 MiB pass over a fresh mapping ran at half the speed of the next, with 262,000 faults per
     * GiB).
     */
    static final int POPULATE_GRANULE_BYTES = 64 * 1024;

    /** One mapped window and which of its granules were populated. */
    private record Window(MemorySegment segment, java.util.concurrent.atomic.AtomicLongArray populated) {
        Window(MemorySegment segment) {
            this(segment, new java.util.concurrent.atomic.AtomicLongArray(
                    (int) ((segment.byteSize() / POPULATE_GRANULE_BYTES + 64) / 64)));
        }

        boolean isPopulated(long granule) {
            return (populated.get((int) (granule >>> 6)) & (1L << granule)) != 0;
        }

        void markPopulated(long granule) {
            populated.getAndAccumulate((int) (granule >>> 6), 1L << granule, (a, b) -> a | b);
        }
    }

    private final String name;
    private final FileChannel channel;
    private final long sizeBytes;
    private final Arena arena = Arena.ofShared();
    private final NativeIo nativeIo;
    private final ConcurrentHashMap<Long, Window> windows = new ConcurrentHashMap<>();
    private final AtomicInteger count = new AtomicInteger();
    private final java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();

    /**
     * @param name      for messages
     * @param channel   the file, open read-write; stays the caller's
     * @param sizeBytes bytes of the file to map at most (the device's size)
     * @param nativeIo  for {@link NativeIo#populateWrite}
     */
    MappedWindows(String name, FileChannel channel, long sizeBytes, NativeIo nativeIo) {
        this.name = name;
        this.nativeIo = nativeIo;
        this.channel = channel;
        this.sizeBytes = sizeBytes;
    }

    /**
     * The mapped bytes {@code [offsetBytes, offsetBytes+lengthBytes)}, which must lie inside one
     * window and inside the size; null when that window is not mapped and no more may be, or after
     * close. The granules the range covers whole are populated (page-table entries filled, see
     * {@link #POPULATE_GRANULE_BYTES}) if they were not yet: the range must hold data.
     *
     * @throws IOException the mapping failed
     */
    MemorySegment slice(long offsetBytes, int lengthBytes) throws IOException {
        if (closed.get()) {
            return null;
        }
        long index = offsetBytes / WINDOW_BYTES;
        long start = index * WINDOW_BYTES;
        if (offsetBytes + lengthBytes > Math.min(start + WINDOW_BYTES, sizeBytes)) {
            throw new IllegalArgumentException(name + ": range offset " + offsetBytes + " length " + lengthBytes
                    + " crosses a mapping window or the end");
        }
        Window w = windows.get(index);
        if (w == null) {
            w = map(index, start);
            if (w == null) {
                return null;
            }
        }
        long from = offsetBytes - start;
        populate(w, from, from + lengthBytes);
        return w.segment().asSlice(from, lengthBytes);
    }

    /** Populates the granules inside {@code [from, to)} of the window (bytes from its start), once. */
    private void populate(Window w, long from, long to) {
        long first = (from + POPULATE_GRANULE_BYTES - 1) / POPULATE_GRANULE_BYTES;
        long end = to / POPULATE_GRANULE_BYTES;
        for (long g = first; g < end; g++) {
            if (!w.isPopulated(g)) {
                long bytes = (end - g) * POPULATE_GRANULE_BYTES;
                if (nativeIo.populateWrite(w.segment().asSlice(g * POPULATE_GRANULE_BYTES, bytes))) {
                    for (long m = g; m < end; m++) {
                        w.markPopulated(m);
                    }
                }
                return;
            }
        }
    }

    /** Whether a slice of this window could be had without going over the limit. */
    boolean available(long offsetBytes) {
        return !closed.get() && (windows.containsKey(offsetBytes / WINDOW_BYTES) || count.get() < MAX_WINDOWS);
    }

    /** Windows mapped now (for tests). */
    int mappedCount() {
        return count.get();
    }

    private Window map(long index, long start) throws IOException {
        if (closed.get()) {
            return null;
        }
        if (count.incrementAndGet() > MAX_WINDOWS) {
            count.decrementAndGet();
            return null;
        }
        MemorySegment mapped;
        try {
            mapped = channel.map(FileChannel.MapMode.READ_WRITE, start, Math.min(WINDOW_BYTES, sizeBytes - start), arena);
        } catch (IOException | RuntimeException e) {
            count.decrementAndGet();
            throw new IOException("mapping " + name + " at offset " + start + " failed: " + e.getMessage(), e);
        }
        Window mine = new Window(mapped);
        Window won = windows.putIfAbsent(index, mine);
        if (won != null) {
            count.decrementAndGet(); // stays mapped until close, unused
            return won;
        }
        return mine;
    }

    /**
     * Unmaps every window; later calls do nothing. Waits up to a second for receives still running
     * into them; if one still is, its windows stay mapped (memory of the process, not of the file)
     * and a warning says so.
     */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        for (int i = 0; ; i++) {
            try {
                arena.close();
                return;
            } catch (IllegalStateException e) {
                if (i == 100) {
                    LOG.warn("{}: a write into its mapping is still running; the mapping stays until the process ends",
                            name);
                    return;
                }
                try {
                    Thread.sleep(10);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }
}
