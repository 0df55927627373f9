package org.blksnap.engine.tracker;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class TakeBarrierTest {

    /**
     * The writers are virtual threads that never block outside the barrier, more of them than there
     * are carriers, so every carrier is busy and a writer that was woken may wait a long time to run.
     * A barrier whose open() queued on a lock behind such a writer hung here (it hung CI for 90
     * minutes); this one never makes the closer wait for a writer that is not inside.
     */
    @Test
    void noWriterIsInsideWhileTheBarrierIsClosedAndClosingDrainsThoseInside() throws Exception {
        TakeBarrier barrier = new TakeBarrier();
        AtomicInteger inside = new AtomicInteger();
        AtomicInteger violations = new AtomicInteger();
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> writers = new ArrayList<>();
        int count = 4 * Runtime.getRuntime().availableProcessors() + 16;
        for (int i = 0; i < count; i++) {
            writers.add(Thread.ofVirtual().start(() -> {
                while (!stop.get()) {
                    long s = barrier.enter();
                    try {
                        inside.incrementAndGet();
                        Thread.onSpinWait();
                        inside.decrementAndGet();
                    } finally {
                        barrier.exit(s);
                    }
                }
            }));
        }
        for (int take = 0; take < 2_000; take++) {
            long s = barrier.close();
            try {
                if (inside.get() != 0) {
                    violations.incrementAndGet();
                }
                assertThat(barrier.isClosed()).isTrue();
            } finally {
                barrier.open(s);
            }
        }
        stop.set(true);
        for (Thread t : writers) {
            assertThat(t.join(Duration.ofSeconds(30))).as("writer finished").isTrue();
        }
        assertThat(violations.get()).isZero();
        assertThat(barrier.isClosed()).isFalse();
    }

    @Test
    void aWriterWaitsWhileClosedAndProceedsAfterOpen() throws Exception {
        TakeBarrier barrier = new TakeBarrier();
        long s = barrier.close();
        AtomicBoolean entered = new AtomicBoolean();
        Thread w = oneWrite(barrier, entered);
        Thread.sleep(100);
        assertThat(entered).isFalse();
        barrier.open(s);
        w.join(5_000);
        assertThat(entered).isTrue();
    }

    @Test
    void twoClosersExcludeEachOtherAndWritersWaitForBoth() throws Exception {
        TakeBarrier barrier = new TakeBarrier();
        long first = barrier.close();
        AtomicBoolean secondClosed = new AtomicBoolean();
        long[] secondStamp = new long[1];
        Thread closer = Thread.ofPlatform().start(() -> {
            secondStamp[0] = barrier.close();
            secondClosed.set(true);
        });
        AtomicBoolean entered = new AtomicBoolean();
        Thread w = oneWrite(barrier, entered);
        Thread.sleep(100);
        assertThat(secondClosed).isFalse();
        barrier.open(first);
        closer.join(5_000);
        assertThat(secondClosed).isTrue();
        Thread.sleep(100);
        assertThat(entered).as("writer waits while the second closer holds the barrier").isFalse();
        barrier.open(secondStamp[0]);
        w.join(5_000);
        assertThat(entered).isTrue();
    }

    @Test
    void aWriterInterruptedWhileWaitingStillEntersAndKeepsTheInterrupt() throws Exception {
        TakeBarrier barrier = new TakeBarrier();
        long s = barrier.close();
        AtomicBoolean interruptKept = new AtomicBoolean();
        Thread w = Thread.ofVirtual().start(() -> {
            long st = barrier.enter();
            interruptKept.set(Thread.currentThread().isInterrupted());
            barrier.exit(st);
        });
        Thread.sleep(50);
        w.interrupt();
        Thread.sleep(50);
        assertThat(w.isAlive()).as("an interrupt does not let a writer past a closed barrier").isTrue();
        barrier.open(s);
        w.join(5_000);
        assertThat(interruptKept).isTrue();
        assertThat(barrier.isClosed()).isFalse();
    }

    @Test
    void openWithoutCloseIsRefused() {
        TakeBarrier barrier = new TakeBarrier();
        long s = barrier.close();
        barrier.open(s);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> barrier.open(s))
                .isInstanceOf(IllegalMonitorStateException.class);
    }

    /** A virtual thread that enters once, records that it got in, and leaves. */
    private static Thread oneWrite(TakeBarrier barrier, AtomicBoolean entered) {
        return Thread.ofVirtual().start(() -> {
            long st = barrier.enter();
            entered.set(true);
            barrier.exit(st);
        });
    }
}
