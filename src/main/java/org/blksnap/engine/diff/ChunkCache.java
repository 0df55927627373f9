package org.blksnap.engine.diff;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.IntSupplier;

/**
 * The chunks of one diff area that hold a buffer, least recently used first, bounded by
 * chunk_maximum_in_cache (read live). When over the limit, the oldest chunks whose lock is free
 * give their buffer back to the pool; busy ones are skipped, as in the module.
 *
 * <p>Thread-safe: one lock. It only ever try-locks chunks, so it cannot deadlock with a thread
 * that holds a chunk lock and calls in here. A {@code ReentrantLock} rather than a monitor: a
 * virtual thread that a monitor is handed to is resubmitted through the JDK's unblocker thread,
 * and with every carrier busy with writers that resubmission was seen to wait for seconds while an
 * image reader (holding a chunk lock) waited on it.
 */
final class ChunkCache {
    private final IntSupplier limit;
    private final DiffBufferPool pool;
    private final LinkedHashMap<Long, Chunk> chunks = new LinkedHashMap<>(64, 0.75f, true);
    private final ReentrantLock lock = new ReentrantLock();

    ChunkCache(IntSupplier limit, DiffBufferPool pool) {
        this.limit = limit;
        this.pool = pool;
    }

    /** Records use of a chunk that holds a buffer (caller holds its lock); may evict others. */
    void touch(Chunk c) {
        lock.lock();
        try {
            chunks.put(c.index, c);
            trim();
        } finally {
            lock.unlock();
        }
    }

    private void trim() {
        int max = limit.getAsInt();
        Iterator<Chunk> it = chunks.values().iterator();
        while (chunks.size() > max && it.hasNext()) {
            Chunk c = it.next();
            // The caller's own chunk is in use; a reentrant tryLock would succeed, so skip it by hand.
            if (!c.lock.isHeldByCurrentThread() && tryRelease(c)) {
                it.remove();
            }
        }
    }

    /** Gives the chunk's buffer back to the pool if nobody holds the chunk; returns whether it did. */
    private boolean tryRelease(Chunk c) {
        if (!c.lock.tryLock()) {
            return false;
        }
        try {
            pool.release(c.buffer);
            c.buffer = null;
            return true;
        } finally {
            c.lock.unlock();
        }
    }

    /** Forgets a chunk (caller holds its lock and deals with its buffer). */
    void remove(Chunk c) {
        lock.lock();
        try {
            chunks.remove(c.index);
        } finally {
            lock.unlock();
        }
    }

    int size() {
        lock.lock();
        try {
            return chunks.size();
        } finally {
            lock.unlock();
        }
    }

    /** Drops every buffer (at corruption and at destroy). */
    void clear() {
        lock.lock();
        try {
            Iterator<Chunk> it = chunks.values().iterator();
            while (it.hasNext()) {
                tryRelease(it.next());
                it.remove();
            }
        } finally {
            lock.unlock();
        }
    }
}
