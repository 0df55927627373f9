package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class DoneBitmapTest {

    @Test
    void bitsStartClearAndStaySetAcrossWordBoundaries() {
        DoneBitmap m = new DoneBitmap(130);
        for (long i = 0; i < 130; i++) {
            assertThat(m.isDone(i)).isFalse();
        }
        m.markDone(63);
        m.markDone(64);
        m.markDone(129);
        m.markDone(64); // again: no change
        for (long i = 0; i < 130; i++) {
            assertThat(m.isDone(i)).as("bit %d", i).isEqualTo(i == 63 || i == 64 || i == 129);
        }
        assertThat(m.chunkCount()).isEqualTo(130);
    }

    @Test
    void aNegativeCountIsRefused() {
        assertThatThrownBy(() -> new DoneBitmap(-1)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("chunkCount (-1) must be >= 0 and < 2^37");
    }

    /**
     * Forbidden: a bit set by one thread lost because another set a bit of the same word at the same
     * time. Threads set interleaved bits, so every word is contended.
     */
    @Test
    void concurrentMarksOfBitsInTheSameWordAreNeverLost() throws Exception {
        int threads = 8;
        int bits = 64 * 64;
        for (int round = 0; round < 50; round++) {
            DoneBitmap m = new DoneBitmap(bits);
            CountDownLatch go = new CountDownLatch(1);
            AtomicLong readClearAfterSet = new AtomicLong();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int first = t;
                ts.add(Thread.ofPlatform().start(() -> {
                    await(go);
                    for (int i = first; i < bits; i += threads) {
                        m.markDone(i);
                        if (!m.isDone(i)) {
                            readClearAfterSet.incrementAndGet();
                        }
                    }
                }));
            }
            go.countDown();
            for (Thread t : ts) {
                t.join();
            }
            assertThat(readClearAfterSet).hasValue(0);
            for (int i = 0; i < bits; i++) {
                assertThat(m.isDone(i)).as("round %d bit %d", round, i).isTrue();
            }
        }
    }

    /**
     * Forbidden: a reader that sees a bit set but not what the setter wrote before setting it (the
     * chunk's state and region, here a plain array element).
     */
    @Test
    void aReaderThatSeesABitSeesEverythingWrittenBeforeIt() throws Exception {
        int bits = 1 << 16;
        DoneBitmap m = new DoneBitmap(bits);
        long[] payload = new long[bits];
        AtomicLong stale = new AtomicLong();
        Thread reader = Thread.ofPlatform().start(() -> {
            for (int i = 0; i < bits; i++) {
                while (!m.isDone(i)) {
                    Thread.onSpinWait();
                }
                if (payload[i] != i + 1) {
                    stale.incrementAndGet();
                }
            }
        });
        Thread writer = Thread.ofPlatform().start(() -> {
            for (int i = 0; i < bits; i++) {
                payload[i] = i + 1;
                m.markDone(i);
            }
        });
        writer.join();
        reader.join();
        assertThat(stale).hasValue(0);
    }

    private static void await(CountDownLatch l) {
        try {
            l.await();
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
    }
}
