package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(value = 30, unit = TimeUnit.SECONDS)
class SlowRequestThreadsTest {

    @Test
    void requestsRunAtOnceOnPlatformThreadsAndOnVirtualThreadsWhenAllAreBusyNeverQueued() throws Exception {
        SlowRequestThreads threads = new SlowRequestThreads(2, 30, TimeUnit.SECONDS);
        int tasks = 5;
        CountDownLatch started = new CountDownLatch(tasks);
        CountDownLatch release = new CountDownLatch(1);
        List<Thread> ranOn = new CopyOnWriteArrayList<>();
        // Started from several threads at once: the pool's limit is checked under contention.
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> starters = new CopyOnWriteArrayList<>();
        for (int i = 0; i < tasks; i++) {
            starters.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                threads.start(() -> {
                    ranOn.add(Thread.currentThread());
                    started.countDown();
                    try {
                        release.await();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                });
            }));
        }
        go.countDown();
        // All five run at the same time although only two platform threads may exist: none waits in a queue.
        assertThat(started.await(10, TimeUnit.SECONDS)).as("every task started while the others block").isTrue();
        assertThat(ranOn).filteredOn(t -> !t.isVirtual()).hasSize(2)
                .allSatisfy(t -> assertThat(t.getName()).startsWith("nbd-slow-"));
        assertThat(ranOn).filteredOn(Thread::isVirtual).hasSize(3);
        release.countDown();
        for (Thread t : starters) {
            t.join();
        }

        // Once they are idle, the platform threads take requests again.
        Thread[] next = new Thread[1];
        for (int attempt = 0; attempt < 100 && (next[0] == null || next[0].isVirtual()); attempt++) {
            CountDownLatch one = new CountDownLatch(1);
            threads.start(() -> {
                next[0] = Thread.currentThread();
                one.countDown();
            });
            one.await();
            Thread.sleep(10); // the finished tasks' threads go back to waiting for work
        }
        assertThat(next[0].isVirtual()).as("an idle platform thread is reused").isFalse();
    }
}
