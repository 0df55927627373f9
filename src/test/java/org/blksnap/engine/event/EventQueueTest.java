package org.blksnap.engine.event;

import org.blksnap.engine.SnapshotEvent;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.junit.jupiter.api.Test;
import static org.blksnap.engine.Errnos.errnoOf;

class EventQueueTest {


    @Test
    void eventsComeOutInOrder() {
        EventQueue q = new EventQueue("s");
        q.post(new SnapshotEvent.LowFreeSpace(1, 100));
        q.post(new SnapshotEvent.Corrupted(2, "d0", 28));
        assertThat(q.take(0)).isEqualTo(new SnapshotEvent.LowFreeSpace(1, 100));
        assertThat(q.take(0)).isEqualTo(new SnapshotEvent.Corrupted(2, "d0", 28));
        assertThat(q.pending()).isZero();
    }

    @Test
    void aWaitTimesOutWithEnoentAfterRealMilliseconds() {
        EventQueue q = new EventQueue("s");
        long t0 = System.nanoTime();
        assertThat(errnoOf(() -> q.take(150))).isEqualTo(Errno.ENOENT);
        assertThat((System.nanoTime() - t0) / 1_000_000).isGreaterThanOrEqualTo(150);
        assertThatThrownBy(() -> q.take(-1)).hasMessageContaining("timeout (-1 ms)");
    }

    @Test
    void closingWakesEveryWaiterWithEsrch() throws Exception {
        EventQueue q = new EventQueue("s");
        List<Errno> got = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch started = new CountDownLatch(3);
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            ts.add(Thread.ofVirtual().start(() -> {
                started.countDown();
                got.add(errnoOf(() -> q.take(60_000)));
            }));
        }
        started.await();
        Thread.sleep(50);
        q.close();
        for (Thread t : ts) {
            t.join(10_000);
        }
        assertThat(got).containsExactly(Errno.ESRCH, Errno.ESRCH, Errno.ESRCH);
        assertThat(errnoOf(() -> q.take(0))).isEqualTo(Errno.ESRCH);
    }

    @Test
    void concurrentWaitersEachGetADistinctEventOrTimeOut() throws Exception {
        EventQueue q = new EventQueue("s");
        int waiters = 16;
        int events = 10;
        List<Long> received = Collections.synchronizedList(new ArrayList<>());
        AtomicInteger timeouts = new AtomicInteger();
        CountDownLatch ready = new CountDownLatch(waiters);
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < waiters; i++) {
            ts.add(Thread.ofVirtual().start(() -> {
                ready.countDown();
                try {
                    received.add(q.take(1000).timeNanos());
                } catch (BlksnapException e) {
                    assertThat(e.errno()).isEqualTo(Errno.ENOENT);
                    timeouts.incrementAndGet();
                }
            }));
        }
        ready.await();
        for (int i = 0; i < events; i++) {
            q.post(new SnapshotEvent.LowFreeSpace(i, 1));
        }
        for (Thread t : ts) {
            t.join(10_000);
        }
        assertThat(received).hasSize(events);
        assertThat(new HashSet<>(received)).hasSize(events);
        assertThat(timeouts.get()).isEqualTo(waiters - events);
    }
}
