package org.blksnap.serve;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.blksnap.backup.RepositoryException;
import org.junit.jupiter.api.Test;

/**
 * The chunk cache under concurrent readers. Forbidden outcomes: a value returned for another key; a
 * key loaded twice at once (single flight); a failed load cached; the byte count drifting from the
 * entries it counts, or staying above the bound once inserts are done.
 */
class ChunkCacheTest {
    private static byte[] valueOf(int key, int length) {
        byte[] v = new byte[length];
        java.util.Arrays.fill(v, (byte) key);
        v[0] = (byte) (key >> 8);
        return v;
    }

    @Test
    void concurrentMissesOfOneKeyLoadItOnceAndAllGetTheSameValue() throws Exception {
        ChunkCache cache = new ChunkCache(1 << 20);
        AtomicInteger loads = new AtomicInteger();
        CountDownLatch loading = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        List<Future<byte[]>> got = new ArrayList<>();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int t = 0; t < 32; t++) {
                got.add(pool.submit(() -> cache.get("k", 4096, () -> {
                    loads.incrementAndGet();
                    loading.countDown();
                    try {
                        release.await();
                    } catch (InterruptedException e) {
                        throw new IllegalStateException(e);
                    }
                    return valueOf(7, 4096);
                })));
            }
            loading.await();
            Thread.sleep(50);
            release.countDown();
            byte[] first = got.getFirst().get();
            for (Future<byte[]> f : got) {
                assertThat(f.get()).isSameAs(first);
            }
        }
        assertThat(loads).hasValue(1);
        assertThat(cache.stats().misses()).isEqualTo(1);
        assertThat(cache.stats().hits()).isEqualTo(31);
    }

    @Test
    void aFailedLoadIsNotCachedAndItsWaitersGetTheFailure() throws Exception {
        ChunkCache cache = new ChunkCache(1 << 20);
        RepositoryException damaged = new RepositoryException(RepositoryException.Code.DAMAGED, "chunk 3 is damaged");
        assertThatThrownBy(() -> cache.get("k", 10, () -> {
            throw damaged;
        })).isSameAs(damaged);
        assertThat(cache.contains("k")).isFalse();
        assertThat((byte[]) cache.get("k", 10, () -> valueOf(1, 10))).isEqualTo(valueOf(1, 10));
        assertThat(cache.stats().usedBytes()).isEqualTo(10);
    }

    @Test
    void manyReadersOfManyKeysGetTheirOwnValuesAndTheBoundHolds() throws Exception {
        long capacity = 64 * 4096;
        ChunkCache cache = new ChunkCache(capacity);
        int keys = 512;
        ConcurrentHashMap<Integer, AtomicInteger> inFlight = new ConcurrentHashMap<>();
        AtomicInteger overlapping = new AtomicInteger();
        TestRepo.inParallel(16, t -> {
            long seed = t;
            Random r = new Random(seed);
            for (int i = 0; i < 20_000; i++) {
                // a skewed key distribution: some keys hot, most cold
                int key = r.nextInt(4) == 0 ? r.nextInt(keys) : r.nextInt(32);
                int length = 1024 + (key % 4) * 1024;
                byte[] v = cache.get(key, length, () -> {
                    AtomicInteger n = inFlight.computeIfAbsent(key, k -> new AtomicInteger());
                    if (n.incrementAndGet() > 1) {
                        overlapping.incrementAndGet();
                    }
                    try {
                        return valueOf(key, length);
                    } finally {
                        n.decrementAndGet();
                    }
                });
                assertThat(v).hasSize(length);
                assertThat(v[0]).isEqualTo((byte) (key >> 8));
                assertThat(v[1]).isEqualTo((byte) key);
            }
        });
        assertThat(overlapping).as("two loads of one key at once").hasValue(0);
        ChunkCache.Stats s = cache.stats();
        assertThat(s.usedBytes()).isLessThanOrEqualTo(capacity).isEqualTo(cache.recountBytes());
        assertThat(s.evictions()).isPositive();
        assertThat(s.hits() + s.misses()).isEqualTo(16 * 20_000L);
    }

    @Test
    void aValueLargerThanTheBoundIsReturnedButNotKept() throws Exception {
        ChunkCache cache = new ChunkCache(1000);
        assertThat((byte[]) cache.get("big", 5000, () -> valueOf(2, 5000))).hasSize(5000);
        assertThat(cache.stats().usedBytes()).isZero();
        assertThat(cache.contains("big")).isFalse();
    }
}
