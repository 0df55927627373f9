package org.blksnap.testing;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;

/** Runs the threads of a concurrency test: all released at once, all joined, the first failure rethrown. */
public final class Concurrently {
    private Concurrently() {
    }

    /** The work of thread {@code index} (0 to n-1). */
    @FunctionalInterface
    public interface Task {
        void run(int index) throws Exception;
    }

    /**
     * Starts {@code n} platform threads (so that they really run at once on the machine's CPUs), lets
     * them go together, waits for all of them, and throws the first failure (an exception or an
     * assertion error) as an {@link AssertionError}.
     */
    public static void onPlatformThreads(int n, Task task) throws InterruptedException {
        CountDownLatch go = new CountDownLatch(1);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> all = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int index = i;
            all.add(Thread.ofPlatform().name("concurrently-" + i).start(() -> {
                try {
                    go.await();
                    task.run(index);
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }));
        }
        go.countDown();
        for (Thread t : all) {
            t.join();
        }
        Throwable first = failure.get();
        if (first != null) {
            throw new AssertionError("thread failed: " + first, first);
        }
    }
}
