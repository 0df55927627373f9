package org.blksnap.nbd;

import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * Platform threads for small READs (up to {@link #MAX_BYTES}) of a connection whose small requests
 * have turned out slow (their moving average is over {@link Connection#INLINE_MAX_NANOS}) while
 * others are in flight. Their time goes to waiting in the kernel for a disk. A virtual thread blocked
 * in a file syscall pins its carrier; with one carrier per vCPU and the JDK's compensation, 32
 * uncached 4 KiB reads in flight were served about one and a half at a time, 0.4-0.5x nbdkit's rate,
 * and on these threads as many at a time as the disk takes (0.7-0.8x, issue 14, eighth session).
 * Not for writes: buffered writes to one file take its inode lock in turn (ext4), so more threads
 * only wait for each other (4 KiB writes at depth 32 fell from 1.0x to 0.75x nbdkit on them); nor
 * for requests that spend their time in memory copies (1 MiB), which ran faster on virtual threads.
 *
 * <p>Shared by all connections of the JVM. At most {@link #MAX_THREADS} run at a time and idle ones
 * end after a minute; a request that finds them all busy runs on a virtual thread instead. It is
 * never queued: a queued request could wait behind requests that wait for it (a write waiting
 * for the copy-on-write of a chunk that another request is copying). Thread-safe.
 */
final class SlowRequestThreads {
    /** READs up to this many bytes are moved off virtual threads once their connection is slow. */
    static final int MAX_BYTES = 64 * 1024;
    static final int MAX_THREADS = 64;
    private static final SlowRequestThreads SHARED = new SlowRequestThreads(MAX_THREADS, 60, TimeUnit.SECONDS);

    private final ThreadPoolExecutor pool;

    SlowRequestThreads(int maxThreads, long keepAlive, TimeUnit unit) {
        this.pool = new ThreadPoolExecutor(0, maxThreads, keepAlive, unit, new SynchronousQueue<>(),
                Thread.ofPlatform().daemon().name("nbd-slow-", 0).factory());
    }

    static SlowRequestThreads shared() {
        return SHARED;
    }

    /** Runs {@code task} at once on an idle platform thread, a new one, or (all {@code MAX_THREADS} busy) a virtual thread. */
    void start(Runnable task) {
        try {
            pool.execute(task);
        } catch (RejectedExecutionException e) {
            Thread.ofVirtual().name("nbd-slow-overflow").start(task);
        }
    }
}
