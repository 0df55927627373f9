package org.blksnap.engine.diff;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.function.IntSupplier;

/**
 * The chunks of one diff area that hold a buffer, least recently used first, bounded by
 * chunk_maximum_in_cache (read live). When over the limit, the oldest chunks whose lock is free
 * give their buffer back to the pool; busy ones are skipped, as in the module.
 *
 * <p>Thread-safe: one monitor. It only ever try-locks chunks, so it cannot deadlock with a thread
 * that holds a chunk lock and calls in here.
 */
final class ChunkCache {
    private final IntSupplier limit;
    private final DiffBufferPool pool;
    private final LinkedHashMap<Long, Chunk> chunks = new LinkedHashMap<>(64, 0.75f, true);

    ChunkCache(IntSupplier limit, DiffBufferPool pool) {
        this.limit = limit;
        this.pool = pool;
    }

    /** Records use of a chunk that holds a buffer (caller holds its lock); may evict others. */
    synchronized void touch(Chunk c) {
        chunks.put(c.index, c);
        trim();
    }

    private void trim() {
        int max = limit.getAsInt();
        Iterator<Chunk> it = chunks.values().iterator();
        while (chunks.size() > max && it.hasNext()) {
            Chunk c = it.next();
            // The caller's own chunk is in use; a reentrant tryLock would succeed, so skip it by hand.
            if (c.lock.isHeldByCurrentThread() || !c.lock.tryLock()) {
                continue;
            }
            try {
                pool.release(c.buffer);
                c.buffer = null;
                it.remove();
            } finally {
                c.lock.unlock();
            }
        }
    }

    /** Forgets a chunk (caller holds its lock and deals with its buffer). */
    synchronized void remove(Chunk c) {
        chunks.remove(c.index);
    }

    synchronized int size() {
        return chunks.size();
    }

    /** Drops every buffer (at corruption and at destroy). */
    synchronized void clear() {
        Iterator<Chunk> it = chunks.values().iterator();
        while (it.hasNext()) {
            Chunk c = it.next();
            if (c.lock.tryLock()) {
                try {
                    pool.release(c.buffer);
                    c.buffer = null;
                } finally {
                    c.lock.unlock();
                }
            }
            it.remove();
        }
    }
}
