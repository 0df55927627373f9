package org.blksnap.serve;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicLong;
import org.blksnap.backup.PointReader;
import org.blksnap.backup.RepositoryException;

/**
 * Read-ahead for one served point: detects sequential streams among its reads and loads the chunks
 * ahead of each into the cache on virtual threads, so a sequential reader finds them decompressed
 * and checked when it gets there.
 *
 * <p>Up to {@link #STREAMS} streams are followed at once per point (a multi-connection copy reads
 * several regions in parallel); a read that starts near where one stopped (within its window, or
 * twice the read's length: requests in flight together are served out of order) continues it, any
 * other read starts a new stream in the slot used least recently. A stream's window starts at twice the
 * read and doubles with each sequential read up to {@code maxWindowBytes}; each chunk is asked for
 * once per stream. Prefetches in flight are bounded by a semaphore shared by every point: when none
 * is free the read-ahead is skipped, never waited for. A failed prefetch is dropped silently; the
 * read that needs the chunk reports it.
 *
 * <p>Thread-safe: the stream table is guarded by this object's monitor (a few field updates per read).
 */
final class ReadAhead {
    static final int STREAMS = 8;

    private final PointReader reader;
    private final ExecutorService executor;
    private final Semaphore inFlight;
    private final long maxWindowBytes;
    private final AtomicLong prefetched = new AtomicLong();
    // guarded by this
    private final long[] nextOffset = new long[STREAMS];
    private final long[] aheadTo = new long[STREAMS];
    private final long[] windowBytes = new long[STREAMS];
    private final long[] lastUse = new long[STREAMS];
    private long clock;

    /**
     * @param inFlight       permits for prefetches in flight, shared by every point
     * @param maxWindowBytes the largest read-ahead window of a stream, in bytes; 0 disables read-ahead
     */
    ReadAhead(PointReader reader, ExecutorService executor, Semaphore inFlight, long maxWindowBytes) {
        this.reader = reader;
        this.executor = executor;
        this.inFlight = inFlight;
        this.maxWindowBytes = maxWindowBytes;
        java.util.Arrays.fill(nextOffset, -1);
    }

    /** Notes a read of {@code lengthBytes} at {@code offsetBytes}; starts prefetches when it continues a stream. */
    void onRead(long offsetBytes, long lengthBytes) {
        if (maxWindowBytes <= 0) {
            return;
        }
        long end = offsetBytes + lengthBytes;
        long from;
        long to;
        synchronized (this) {
            clock++;
            int s = -1;
            for (int i = 0; i < STREAMS; i++) {
                if (nextOffset[i] >= 0 && Math.abs(offsetBytes - nextOffset[i]) <= Math.max(2 * lengthBytes, windowBytes[i])) {
                    s = i;
                    break;
                }
            }
            if (s < 0) {
                int lru = 0;
                for (int i = 1; i < STREAMS; i++) {
                    if (lastUse[i] < lastUse[lru]) {
                        lru = i;
                    }
                }
                nextOffset[lru] = end;
                aheadTo[lru] = end;
                windowBytes[lru] = 0;
                lastUse[lru] = clock;
                return;
            }
            nextOffset[s] = Math.max(nextOffset[s], end);
            lastUse[s] = clock;
            windowBytes[s] = Math.min(maxWindowBytes, Math.max(2 * windowBytes[s], 2 * lengthBytes));
            from = Math.max(aheadTo[s], end);
            to = Math.min(reader.sizeBytes(), end + windowBytes[s]);
            if (to <= from) {
                return;
            }
            aheadTo[s] = to;
        }
        for (int c = reader.chunkIndex(from); c <= reader.chunkIndex(to - 1); c++) {
            if (!inFlight.tryAcquire()) {
                return;
            }
            int chunk = c;
            try {
                executor.execute(() -> {
                    try {
                        reader.readChunk(chunk);
                        prefetched.incrementAndGet();
                    } catch (RepositoryException | RuntimeException e) {
                        // the read that needs this chunk reports it
                    } finally {
                        inFlight.release();
                    }
                });
            } catch (java.util.concurrent.RejectedExecutionException e) {
                inFlight.release();
                return;
            }
        }
    }

    /** Chunks loaded ahead so far (the tests and the stats line). */
    long prefetchedChunks() {
        return prefetched.get();
    }
}
