package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.blksnap.testing.Concurrently;
import org.blksnap.util.DirectBuffers;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

class BufferPoolTest {
    private static final int MIB = 1 << 20;

    @Test
    void buffersReleasedBeyondTheClassCapAreFreedAtOnceAndTheRestAreReused() throws Exception {
        BufferPool pool = new BufferPool();
        List<ByteBuffer> held = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            ByteBuffer b = pool.acquire(MIB - 100);
            assertThat(b.position()).isZero();
            assertThat(b.limit()).isEqualTo(MIB - 100);
            assertThat(DirectBuffers.isAligned(b, BufferPool.ALIGNMENT_BYTES)).isTrue();
            held.add(b);
        }
        assertThat(pool.allocatedBytes()).isEqualTo(40L * MIB);
        for (ByteBuffer b : held) {
            pool.release(b);
        }
        assertThat(pool.retainedBytes()).as("32 MiB per class").isEqualTo(32L * MIB);
        assertThat(pool.allocatedBytes()).as("the 8 buffers beyond the cap are freed").isEqualTo(32L * MIB);
        ByteBuffer again = pool.acquire(MIB);
        assertThat(held).anySatisfy(b -> assertThat(b).isSameAs(again));
        assertThat(pool.allocatedBytes()).isEqualTo(32L * MIB);
    }

    @Test
    void theFreeBuffersOfAllClassesTogetherStayUnderTheTotalCap() throws Exception {
        BufferPool pool = new BufferPool();
        List<ByteBuffer> held = new ArrayList<>();
        for (int size = MIB; size <= 32 * MIB; size *= 2) {
            int limit = Math.max(2, BufferPool.RETAINED_BYTES_PER_CLASS / size);
            for (int i = 0; i <= limit; i++) {
                held.add(pool.acquire(size));
            }
        }
        assertThat(pool.allocatedBytes()).isGreaterThan(BufferPool.MAX_RETAINED_BYTES);
        for (ByteBuffer b : held) {
            pool.release(b);
        }
        assertThat(pool.retainedBytes()).isLessThanOrEqualTo(BufferPool.MAX_RETAINED_BYTES);
        assertThat(pool.allocatedBytes()).isEqualTo(pool.retainedBytes());
    }

    @Test
    void releasingNullOrABufferOfNoSizeClassChangesNothing() throws Exception {
        BufferPool pool = new BufferPool();
        pool.release(null);
        pool.release(ByteBuffer.allocateDirect(MIB + 1));
        assertThat(pool.allocatedBytes()).isZero();
        assertThat(pool.retainedBytes()).isZero();
    }

    /**
     * Forbidden outcomes: a buffer handed to two threads at once (a thread finds another thread's
     * stamp in its buffer), a buffer freed while in use (an access fails), more free bytes kept
     * than the caps, and memory still allocated beyond the free buffers once everything is released.
     */
    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void concurrentAcquireAndReleaseNeverShareABufferAndEndWithOnlyTheCappedFreeBuffers() throws Exception {
        BufferPool pool = new BufferPool();
        int rounds = 4000;
        Concurrently.onPlatformThreads(8, t -> {
            long seed = t;
            SplittableRandom r = new SplittableRandom(seed);
            List<ByteBuffer> mine = new ArrayList<>();
            for (int i = 0; i < rounds; i++) {
                int bytes = r.nextInt(4) == 0 ? r.nextInt(16, 4 * MIB) : r.nextInt(16, 64 << 10);
                ByteBuffer b = pool.acquire(bytes);
                long stamp = (seed << 32) | i;
                b.putLong(0, stamp);
                b.putLong(b.limit() - 8, stamp);
                mine.add(b);
                if (mine.size() > 6 || r.nextBoolean()) {
                    ByteBuffer old = mine.remove(r.nextInt(mine.size()));
                    long s = old.getLong(0);
                    Thread.yield();
                    if (old.getLong(0) != s || old.getLong(old.limit() - 8) != s) {
                        throw new AssertionError("a buffer was handed out twice");
                    }
                    pool.release(old);
                }
            }
            for (ByteBuffer b : mine) {
                pool.release(b);
            }
        });
        assertThat(pool.retainedBytes()).isLessThanOrEqualTo(BufferPool.MAX_RETAINED_BYTES);
        assertThat(pool.allocatedBytes()).as("nothing but the free buffers stays allocated").isEqualTo(pool.retainedBytes());
    }

    @Test
    void closingFreesTheFreeBuffersAtOnceAndEveryBufferReleasedAfterIt() throws Exception {
        BufferPool pool = new BufferPool();
        ByteBuffer inUse = pool.acquire(4 * MIB);
        pool.release(pool.acquire(MIB));
        pool.release(pool.acquire(64 << 10));
        assertThat(pool.retainedBytes()).isEqualTo(MIB + (64 << 10));

        pool.close();
        assertThat(pool.retainedBytes()).isZero();
        assertThat(pool.allocatedBytes()).as("only the buffer in use").isEqualTo(4L * MIB);
        inUse.putLong(inUse.limit() - 8, 42); // still valid until released
        pool.release(inUse);
        assertThat(pool.allocatedBytes()).isZero();

        ByteBuffer late = pool.acquire(MIB);
        assertThat(late.limit()).as("a request of a closing server still gets a buffer").isEqualTo(MIB);
        pool.release(late);
        assertThat(pool.allocatedBytes()).isZero();
        assertThat(pool.retainedBytes()).isZero();
        pool.close();
    }

    /**
     * Forbidden outcome: a buffer released while {@link BufferPool#close()} runs that stays in the
     * pool (allocated) after everything was released.
     */
    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void buffersReleasedConcurrentlyWithCloseAreAllFreed() throws Exception {
        for (int round = 0; round < 50; round++) {
            BufferPool pool = new BufferPool();
            int closeAfterMillis = round % 3;
            long seed = round * 31L;
            Concurrently.onPlatformThreads(5, t -> {
                if (t == 4) {
                    Thread.sleep(closeAfterMillis);
                    pool.close();
                    return;
                }
                SplittableRandom r = new SplittableRandom(seed + t);
                for (int i = 0; i < 200; i++) {
                    pool.release(pool.acquire(r.nextInt(16, 256 << 10)));
                }
            });
            assertThat(pool.retainedBytes()).as("round %d", round).isZero();
            assertThat(pool.allocatedBytes()).as("round %d: nothing stays allocated", round).isZero();
        }
    }
}
