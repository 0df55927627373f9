package org.blksnap.agent;

import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.blksnap.backup.ImageReader;
import org.blksnap.cli.Main;
import org.blksnap.ctrl.api.Replies;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One run of the tool's {@code backup} in the agent: its thread, its output kept until a wait takes
 * it ({@link JobOutput}), its lease and its end. Thread-safe: one lock guards the output and the
 * end; the lease is a volatile clock.
 */
final class Job {
    private static final Logger LOG = LoggerFactory.getLogger(Job.class);

    private final UUID id;
    private final List<String> args;
    private final List<String> shownArgs;
    private final Map<String, String> env;
    private final boolean terminal;
    private final long leaseSeconds;
    private final ImageReader.Opener images;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final JobOutput stdout = new JobOutput(lock, changed);
    private final JobOutput stderr = new JobOutput(lock, changed);
    private final CountDownLatch cancelled = new CountDownLatch(1);
    private final CountDownLatch finished = new CountDownLatch(1);
    private final long startedAtMillis = System.currentTimeMillis();
    private volatile long touchedNanos = System.nanoTime();
    private volatile String cancelReason;
    private Thread thread;
    // guarded by lock
    private Integer exitStatus;

    /**
     * @param args      what runs (the agent's options included)
     * @param shownArgs what {@code status} shows: the caller's arguments
     */
    Job(UUID id, List<String> args, List<String> shownArgs, Map<String, String> env, boolean terminal,
        long leaseSeconds, ImageReader.Opener images) {
        this.images = images;
        this.shownArgs = List.copyOf(shownArgs);
        this.id = id;
        this.args = List.copyOf(args);
        this.env = Map.copyOf(env);
        this.terminal = terminal;
        this.leaseSeconds = leaseSeconds;
    }

    UUID id() {
        return id;
    }

    long leaseSeconds() {
        return leaseSeconds;
    }

    void start() {
        thread = Thread.ofVirtual().name("agent-job-" + id).start(this::run);
    }

    private void run() {
        long start = System.nanoTime();
        int rc;
        try (PrintStream out = new PrintStream(stdout, true, StandardCharsets.UTF_8);
             PrintStream err = new PrintStream(stderr, true, StandardCharsets.UTF_8)) {
            rc = Main.runFor(args.toArray(String[]::new), out, err, env, terminal, new Stdin(), images);
            if (cancelReason != null && rc != 0) {
                err.println("blksnap: backup: " + cancelReason);
                rc = Agent.CANCELLED_STATUS;
            }
        } catch (RuntimeException | Error e) {
            LOG.error("agent job {} failed", id, e);
            byte[] why = ("blksnap: backup: the agent's job failed: " + e + "\n").getBytes(StandardCharsets.UTF_8);
            stderr.append(why, 0, why.length);
            rc = Agent.FAILED_STATUS;
        }
        lock.lock();
        try {
            exitStatus = rc;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        finished.countDown();
        LOG.info("agent job {} ended with exit status {} after {} s{}", id, rc,
                String.format("%.2f", (System.nanoTime() - start) / 1e9),
                cancelReason != null ? " (" + cancelReason + ")" : "");
    }

    /**
     * Waits up to {@code timeoutMs} for output or the end, renews the lease, and takes the output
     * there is; the exit status once the job has ended and all its output is taken.
     */
    Replies.AgentOutput await(long timeoutMs) throws InterruptedException {
        touchedNanos = System.nanoTime();
        lock.lock();
        try {
            long left = TimeUnit.MILLISECONDS.toNanos(timeoutMs);
            while (exitStatus == null && stdout.isEmpty() && stderr.isEmpty() && left > 0) {
                left = changed.awaitNanos(left);
            }
            String out = stdout.take();
            String err = stderr.take();
            Integer status = exitStatus != null && stdout.isEmpty() && stderr.isEmpty() ? exitStatus : null;
            return new Replies.AgentOutput(out, err, status);
        } finally {
            lock.unlock();
            touchedNanos = System.nanoTime();
        }
    }

    /** What {@code status} shows of the job: the caller's arguments, its start, its exit status once ended. */
    Replies.AgentJobStatus status() {
        Integer status;
        lock.lock();
        try {
            status = exitStatus;
        } finally {
            lock.unlock();
        }
        return new Replies.AgentJobStatus(id, shownArgs, startedAtMillis, status);
    }

    /** Interrupts the job (the first reason is the one reported); the backup destroys its snapshot. */
    void cancel(String reason) {
        if (ended() || cancelReason != null) {
            return;
        }
        cancelReason = "cancelled: " + reason;
        LOG.info("agent job {} {}", id, cancelReason);
        cancelled.countDown();
        thread.interrupt();
    }

    boolean ended() {
        return finished.getCount() == 0;
    }

    boolean leaseExpired(long nowNanos) {
        return nowNanos - touchedNanos > TimeUnit.SECONDS.toNanos(leaseSeconds);
    }

    /** Waits for the job's end; false if it did not end in time. */
    boolean join(Duration timeout) throws InterruptedException {
        return finished.await(timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** The job's stdin: nothing to read until it is cancelled, then the end (the debug pause waits on it). */
    private final class Stdin extends InputStream {
        @Override
        public int read() throws InterruptedIOException {
            try {
                cancelled.await();
                return -1;
            } catch (InterruptedException e) {
                throw new InterruptedIOException("agent job " + id + " cancelled");
            }
        }
    }
}
