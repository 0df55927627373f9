package org.blksnap.util;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import org.blksnap.util.ConnectionLimit.Admission;
import org.junit.jupiter.api.Test;

class ConnectionLimitTest {
    @Test
    void servesUpToTheLimitThenRefusesUpToItsOwnLimitThenDrops() {
        ConnectionLimit l = new ConnectionLimit(2, 1);
        assertThat(l.admit()).isEqualTo(Admission.SERVE);
        assertThat(l.admit()).isEqualTo(Admission.SERVE);
        assertThat(l.admit()).isEqualTo(Admission.REFUSE);
        assertThat(l.admit()).isEqualTo(Admission.DROP);
        l.refusalEnded();
        assertThat(l.admit()).isEqualTo(Admission.REFUSE);
        l.release();
        assertThat(l.admit()).isEqualTo(Admission.SERVE);
        assertThat(l.reason()).isEqualTo("2 connections already, the limit");
        assertThatThrownBy(() -> new ConnectionLimit(0, 1)).hasMessage("maxServed (0) must be >= 1");
    }

    /**
     * Forbidden outcomes: more connections served or more refusals running at once than the limits,
     * and slots that are not all back once everything ended.
     */
    @Test
    void concurrentAdmissionsNeverExceedEitherLimit() throws Exception {
        ConnectionLimit l = new ConnectionLimit(8, 4);
        AtomicInteger served = new AtomicInteger();
        AtomicInteger refusing = new AtomicInteger();
        AtomicInteger maxServed = new AtomicInteger();
        AtomicInteger maxRefusing = new AtomicInteger();
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < 16; t++) {
            threads.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int i = 0; i < 20_000; i++) {
                    switch (l.admit()) {
                        case SERVE -> {
                            maxServed.accumulateAndGet(served.incrementAndGet(), Math::max);
                            Thread.onSpinWait();
                            served.decrementAndGet();
                            l.release();
                        }
                        case REFUSE -> {
                            maxRefusing.accumulateAndGet(refusing.incrementAndGet(), Math::max);
                            if (ThreadLocalRandom.current().nextBoolean()) {
                                Thread.onSpinWait();
                            }
                            refusing.decrementAndGet();
                            l.refusalEnded();
                        }
                        case DROP -> {
                        }
                    }
                }
            }));
        }
        go.countDown();
        for (Thread t : threads) {
            t.join();
        }
        assertThat(maxServed.get()).isBetween(1, 8);
        assertThat(maxRefusing.get()).isLessThanOrEqualTo(4);
        assertThat(l.served()).isZero();
        assertThat(l.refusing()).isZero();
        assertThat(l.admit()).isEqualTo(Admission.SERVE);
    }
}
