package org.blksnap.engine.tracker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

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
        awaitParked(w);
        assertThat(entered).as("a writer parked at a closed barrier is not inside").isFalse();
        barrier.open(s);
        assertThat(w.join(Duration.ofSeconds(5))).as("writer went on after open").isTrue();
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
        awaitParked(closer);
        awaitParked(w);
        assertThat(secondClosed).as("the second closer waits while the first holds the barrier").isFalse();
        barrier.open(first);
        assertThat(closer.join(Duration.ofSeconds(5))).as("second closer got the barrier").isTrue();
        assertThat(secondClosed).isTrue();
        assertThat(barrier.isClosed()).isTrue();
        assertThat(w.getState()).as("the first open() leaves the writer parked: the second closer still holds the barrier")
                .isEqualTo(Thread.State.WAITING);
        assertThat(entered).isFalse();
        barrier.open(secondStamp[0]);
        assertThat(w.join(Duration.ofSeconds(5))).as("writer went on after the last open").isTrue();
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
        awaitParked(w);
        w.interrupt();
        // The wait consumed the interrupt (its flag is clear until enter() restores it) and parked again.
        await("the interrupted writer parks in the barrier again").atMost(Duration.ofSeconds(10))
                .until(() -> !w.isInterrupted() && w.getState() == Thread.State.WAITING);
        assertThat(barrier.isClosed()).as("an interrupt does not let a writer past a closed barrier").isTrue();
        barrier.open(s);
        assertThat(w.join(Duration.ofSeconds(5))).isTrue();
        assertThat(interruptKept).isTrue();
        assertThat(barrier.isClosed()).isFalse();
    }

    @Test
    void openWithoutCloseIsRefusedByTheBarrierAndLeavesItUsable() {
        TakeBarrier barrier = new TakeBarrier();
        long s = barrier.close();
        barrier.open(s);
        assertThatThrownBy(() -> barrier.open(s)).isExactlyInstanceOf(IllegalStateException.class)
                .hasMessage("open() without a matching close()");
        long again = barrier.close();
        assertThatThrownBy(() -> barrier.open(s)).as("a stale stamp while another close() holds the barrier")
                .isExactlyInstanceOf(IllegalStateException.class)
                .hasMessage("open(" + s + ") with a stamp that no close() holding the barrier returned");
        assertThat(barrier.isClosed()).isTrue();
        barrier.open(again);
        assertThat(barrier.isClosed()).isFalse();
        barrier.exit(barrier.enter());
    }

    /** Waits until {@code t} is parked (in the barrier: the tests' threads wait nowhere else). */
    private static void awaitParked(Thread t) {
        await(t + " parks in the barrier").atMost(Duration.ofSeconds(10)).until(() -> t.getState() == Thread.State.WAITING);
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
