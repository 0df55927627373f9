package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class ChunkCacheTest {

    @Test
    void thePoolKeepsAtMostItsLimitOfFreeBuffersUnderConcurrentReleases() throws Exception {
        DiffBufferPool pool = new DiffBufferPool(4096, () -> 5);
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
            ts.add(Thread.ofVirtual().start(() -> {
                for (int i = 0; i < 1000; i++) {
                    ByteBuffer b = pool.acquire();
                    assertThat(b.capacity()).isEqualTo(4096);
                    pool.release(b);
                    assertThat(pool.freeCount()).isLessThanOrEqualTo(5);
                }
            }));
        }
        for (Thread t : ts) {
            t.join();
        }
        assertThat(pool.freeCount()).isBetween(1, 5);
        assertThat(pool.allocatedCount()).isLessThanOrEqualTo(8 + 5);
    }

    @Test
    void buffersAreAlignedForDirectIo() {
        DiffBufferPool pool = new DiffBufferPool(8192, () -> 1);
        ByteBuffer b = pool.acquire();
        assertThat(b.isDirect()).isTrue();
        assertThat(java.lang.foreign.MemorySegment.ofBuffer(b).address() % 4096).isZero();
    }

    @Test
    void theCacheEvictsTheLeastRecentlyUsedFreeChunksBeyondItsLimitButNeverTheCallersOwn() {
        DiffBufferPool pool = new DiffBufferPool(512, () -> 100);
        ChunkCache cache = new ChunkCache(() -> 2, pool);
        List<Chunk> cs = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            Chunk c = new Chunk(i);
            c.buffer = pool.acquire();
            cs.add(c);
        }
        cache.touch(cs.get(0));
        cache.touch(cs.get(1));
        cache.touch(cs.get(0));
        cs.get(0).lock.lock();
        try {
            cache.touch(cs.get(2));
        } finally {
            cs.get(0).lock.unlock();
        }
        assertThat(cache.size()).isEqualTo(2);
        assertThat(cs.get(1).buffer).as("least recently used is evicted").isNull();
        assertThat(cs.get(0).buffer).isNotNull();
        cs.get(3).lock.lock();
        try {
            // All others busy (held by another thread): nothing to evict but the caller's own chunk, which stays.
            Thread other = Thread.ofVirtual().start(() -> {
                cs.get(0).lock.lock();
                cs.get(2).lock.lock();
            });
            try {
                other.join();
            } catch (InterruptedException e) {
                throw new AssertionError(e);
            }
            cache.touch(cs.get(3));
            assertThat(cs.get(3).buffer).isNotNull();
            assertThat(cache.size()).isEqualTo(3);
        } finally {
            cs.get(3).lock.unlock();
        }
    }
}
