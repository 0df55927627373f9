package org.blksnap.engine.event;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;
import static org.blksnap.engine.Errnos.errnoOf;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.SnapshotEvent;
import org.junit.jupiter.api.Test;

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
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            ts.add(Thread.ofVirtual().start(() -> got.add(errnoOf(() -> q.take(60_000)))));
        }
        awaitWaiting(ts);
        q.close();
        for (Thread t : ts) {
            assertThat(t.join(Duration.ofSeconds(10))).as("woken by close(), not by its 60 s timeout").isTrue();
        }
        assertThat(got).containsExactly(Errno.ESRCH, Errno.ESRCH, Errno.ESRCH);
        assertThat(errnoOf(() -> q.take(0))).isEqualTo(Errno.ESRCH);
    }

    @Test
    void eachEventWakesOneWaiterAndNoTwoWaitersGetTheSameOne() throws Exception {
        EventQueue q = new EventQueue("s");
        int waiters = 16;
        int events = 10;
        List<Long> received = Collections.synchronizedList(new ArrayList<>());
        List<Errno> failed = Collections.synchronizedList(new ArrayList<>());
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < waiters; i++) {
            ts.add(Thread.ofVirtual().start(() -> {
                try {
                    received.add(q.take(60_000).timeNanos());
                } catch (BlksnapException e) {
                    failed.add(e.errno());
                }
            }));
        }
        awaitWaiting(ts);
        for (int i = 0; i < events; i++) {
            q.post(new SnapshotEvent.LowFreeSpace(i, 1));
        }
        await("every event taken by a waiter it woke").atMost(Duration.ofSeconds(10)).until(() -> received.size() == events);
        assertThat(received).as("the time stamp of each event: each taken once").containsExactlyInAnyOrder(
                0L, 1L, 2L, 3L, 4L, 5L, 6L, 7L, 8L, 9L);
        await("the waiters that took an event end").atMost(Duration.ofSeconds(10))
                .until(() -> ts.stream().filter(Thread::isAlive).count() == waiters - events);
        assertThat(failed).as("the other waiters still wait").isEmpty();
        q.close();
        for (Thread t : ts) {
            assertThat(t.join(Duration.ofSeconds(10))).isTrue();
        }
        assertThat(failed).containsOnly(Errno.ESRCH).hasSize(waiters - events);
    }

    /** Waits until every thread is in a timed wait: inside {@code take}, the only place these threads wait with a timeout. */
    private static void awaitWaiting(List<Thread> ts) {
        await("waiters inside take()").atMost(Duration.ofSeconds(10))
                .until(() -> ts.stream().allMatch(t -> t.getState() == Thread.State.TIMED_WAITING));
    }
}
