package org.blksnap.engine.tracker;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class TakeBarrierTest {

    @Test
    void noWriterIsInsideWhileTheBarrierIsClosedAndClosingDrainsThoseInside() throws Exception {
        TakeBarrier barrier = new TakeBarrier();
        AtomicInteger inside = new AtomicInteger();
        AtomicInteger violations = new AtomicInteger();
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> writers = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
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
            t.join(10_000);
        }
        assertThat(violations.get()).isZero();
        assertThat(barrier.isClosed()).isFalse();
    }

    @Test
    void aWriterWaitsWhileClosedAndProceedsAfterOpen() throws Exception {
        TakeBarrier barrier = new TakeBarrier();
        long s = barrier.close();
        AtomicBoolean entered = new AtomicBoolean();
        Thread w = Thread.ofVirtual().start(() -> {
            long st = barrier.enter();
            entered.set(true);
            barrier.exit(st);
        });
        Thread.sleep(100);
        assertThat(entered).isFalse();
        barrier.open(s);
        w.join(5_000);
        assertThat(entered).isTrue();
    }
}
