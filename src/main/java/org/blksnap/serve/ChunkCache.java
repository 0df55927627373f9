package org.blksnap.serve;

import java.util.ArrayDeque;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import org.blksnap.backup.PointReader;
import org.blksnap.backup.RepositoryException;

/**
 * The bounded cache of decoded index nodes and checked, decompressed chunks of every served point,
 * keyed by content (so points sharing a chunk share its entry). Bounded in bytes (the weights the
 * reader gives); evicted by CLOCK: a hit only sets a reference bit (no lock, no list move), and the
 * eviction hand, under a lock taken only by inserts, gives each referenced entry a second chance.
 *
 * <p>Loads are single-flight: concurrent misses of one key wait for the first caller's load instead
 * of loading again. A failed load is not cached (a damaged chunk fails every read, never gives
 * stale or wrong data), and its waiters get the same failure.
 *
 * <p>Thread-safe. The byte bound holds once inserts finish; while loads are in flight their values
 * are not yet counted (at most one chunk per in-flight read or read-ahead, both bounded).
 */
final class ChunkCache implements PointReader.BlobCache {
    private final long capacityBytes;
    private final ConcurrentHashMap<Object, Entry> map = new ConcurrentHashMap<>();
    private final ReentrantLock clockLock = new ReentrantLock();
    /** The clock ring, oldest insert first; guarded by {@link #clockLock}. */
    private final ArrayDeque<Entry> ring = new ArrayDeque<>();
    private final AtomicLong usedBytes = new AtomicLong();
    private final AtomicLong hits = new AtomicLong();
    private final AtomicLong misses = new AtomicLong();
    private final AtomicLong loads = new AtomicLong();
    private final AtomicLong evictions = new AtomicLong();

    private static final class Entry {
        final Object key;
        final CompletableFuture<Object> value = new CompletableFuture<>();
        volatile boolean referenced;
        long weightBytes; // guarded by clockLock once in the ring

        Entry(Object key) {
            this.key = key;
        }
    }

    /** Counters, for the log line at exit and the tests. */
    record Stats(long hits, long misses, long loads, long evictions, long usedBytes, int entries) {
    }

    /** @param capacityBytes the bound on the weights of the cached values; 0 caches nothing */
    ChunkCache(long capacityBytes) {
        if (capacityBytes < 0) {
            throw new IllegalArgumentException("capacityBytes (" + capacityBytes + ") must be >= 0");
        }
        this.capacityBytes = capacityBytes;
    }

    @Override
    @SuppressWarnings("unchecked")
    public <T> T get(Object key, long weightBytes, PointReader.Loader<T> loader) throws RepositoryException {
        Entry e = map.get(key);
        if (e == null) {
            Entry mine = new Entry(key);
            e = map.putIfAbsent(key, mine);
            if (e == null) {
                misses.incrementAndGet();
                return load(mine, weightBytes, loader);
            }
        }
        hits.incrementAndGet();
        e.referenced = true;
        return (T) await(e);
    }

    /** Whether {@code key} is cached or being loaded (read-ahead skips those). */
    boolean contains(Object key) {
        return map.containsKey(key);
    }

    private <T> T load(Entry mine, long weightBytes, PointReader.Loader<T> loader) throws RepositoryException {
        T value;
        try {
            loads.incrementAndGet();
            value = loader.load();
        } catch (RepositoryException | RuntimeException | Error t) {
            map.remove(mine.key, mine);
            mine.value.completeExceptionally(t);
            throw t;
        }
        mine.value.complete(value);
        insert(mine, Math.max(1, weightBytes));
        return value;
    }

    private static Object await(Entry e) throws RepositoryException {
        try {
            return e.value.join();
        } catch (CompletionException ce) {
            Throwable t = ce.getCause();
            if (t instanceof RepositoryException r) {
                throw r;
            }
            if (t instanceof RuntimeException r) {
                throw r;
            }
            if (t instanceof Error err) {
                throw err;
            }
            throw ce;
        }
    }

    private void insert(Entry e, long weightBytes) {
        clockLock.lock();
        try {
            e.weightBytes = weightBytes;
            ring.addLast(e);
            usedBytes.addAndGet(weightBytes);
            // the hand: a referenced entry loses its bit and goes round once more; one without is evicted
            int spins = 0;
            while (usedBytes.get() > capacityBytes && !ring.isEmpty()) {
                Entry h = ring.pollFirst();
                if (h.referenced && spins++ < 2 * ring.size() + 2) {
                    h.referenced = false;
                    ring.addLast(h);
                    continue;
                }
                map.remove(h.key, h);
                usedBytes.addAndGet(-h.weightBytes);
                evictions.incrementAndGet();
            }
        } finally {
            clockLock.unlock();
        }
    }

    /** The bound, in bytes. */
    long capacityBytes() {
        return capacityBytes;
    }

    Stats stats() {
        clockLock.lock();
        try {
            return new Stats(hits.get(), misses.get(), loads.get(), evictions.get(), usedBytes.get(), ring.size());
        } finally {
            clockLock.unlock();
        }
    }

    /** The sum of the weights of the entries in the ring, counted afresh (the tests compare it with the counter). */
    long recountBytes() {
        clockLock.lock();
        try {
            return ring.stream().mapToLong(x -> x.weightBytes).sum();
        } finally {
            clockLock.unlock();
        }
    }
}
