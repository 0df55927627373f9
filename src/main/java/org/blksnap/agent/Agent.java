package org.blksnap.agent;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.ToLongFunction;
import org.blksnap.backup.ImageReader;
import org.blksnap.ctrl.AccessPolicy;
import org.blksnap.ctrl.BackupAgent;
import org.blksnap.ctrl.api.Replies;
import org.blksnap.ctrl.api.Requests;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The resident backup agent: runs {@code blksnap backup} inside the daemon's JVM, which is warm
 * (classes loaded, SHA-256 and zstd paths compiled), so a small incremental costs what it reads
 * rather than a fresh JVM's start and JIT warm-up (docs/BENCHMARKS.md). A job is the tool's own
 * {@code backup} command ({@code org.blksnap.cli.Main#runFor}) with the caller's arguments, talking to
 * this daemon over its control socket like any client; its output is kept for {@code agent/wait}.
 *
 * <p>Rules, all checked here: only a privileged caller (root or the daemon's user) may start a job
 * (it runs as the daemon's user, EPERM otherwise); only {@code backup} runs (EINVAL); its paths must
 * be absolute (EINVAL); {@code --control} and {@code --agent} are the agent's to set (EINVAL); at
 * most {@link #MAX_JOBS} run at once (EAGAIN); a job whose lease runs out (no wait for
 * {@code leaseSeconds}) is cancelled, and an ended job no one collects is forgotten after its lease.
 * Cancelling interrupts the job: the backup destroys its snapshot, writes no point, and exits with
 * {@link #CANCELLED_STATUS}.
 *
 * <p>Thread-safe. {@link #close} cancels every job and waits for them (the daemon calls it before it
 * stops accepting control requests, so the jobs can still destroy their snapshots).
 */
public final class Agent implements BackupAgent, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Agent.class);
    /** Jobs running at once at most. */
    static final int MAX_JOBS = 4;
    /** Lease of a job when the caller gives none, in seconds. */
    static final long DEFAULT_LEASE_SECONDS = 60;
    /** Exit status of a cancelled job (128 + SIGINT, as a shell reports Ctrl-C). */
    static final int CANCELLED_STATUS = 130;
    /** Exit status of a job that failed with an unexpected exception (sysexits EX_SOFTWARE, as the tool's own). */
    static final int FAILED_STATUS = 70;
    /** How long {@link #close} waits for each job to end. */
    private static final Duration CLOSE_WAIT = Duration.ofSeconds(15);
    /** Options whose values must be absolute paths ({@code --repo} may be {@code s3://} instead). */
    private static final Set<String> PATH_OPTIONS = Set.of("--repo", "--storage-dir", "--key-file", "--freeze");
    /** Options the agent sets itself. */
    private static final Set<String> AGENT_OPTIONS = Set.of("--control", "--agent");

    /**
     * Heap a backup needs per chunk of its devices, in bytes, at most: its writer's deduplication
     * entry (about 150 bytes, docs/repository.md "Limits") and the ref it holds until its tree is built.
     */
    static final long HEAP_BYTES_PER_CHUNK = 200;
    /** The chunk size the estimate assumes (the smallest tracking block by default), in bytes. */
    static final long ESTIMATE_CHUNK_BYTES = 64 << 10;

    private final Path controlSocket;
    private final ToLongFunction<List<String>> devicesBytes;
    private final ImageReader.Opener images;
    private final Map<UUID, Job> jobs = new ConcurrentHashMap<>();
    private final Thread reaper;
    private volatile boolean closed;

    /**
     * @param controlSocket this daemon's control socket, which the jobs call
     * @param devicesBytes  the summed size in bytes of the named devices (unknown names count 0:
     *                      the job itself reports them)
     * @param images        how the jobs read snapshot images (in this process, not over NBD), or null: over NBD
     */
    public Agent(Path controlSocket, ToLongFunction<List<String>> devicesBytes, ImageReader.Opener images) {
        this.controlSocket = controlSocket.toAbsolutePath().normalize();
        this.devicesBytes = devicesBytes;
        this.images = images;
        this.reaper = Thread.ofVirtual().name("agent-reaper").start(this::reap);
    }

    @Override
    public Replies.AgentJob start(AccessPolicy.Caller caller, Requests.AgentStart q) {
        if (!caller.privileged()) {
            throw new BlksnapException(Errno.EPERM, "the backup agent runs jobs as the daemon's user: only root or "
                    + "that user may start one, not " + caller.describe() + " (back up with --agent off)");
        }
        List<String> args = checked(q.args());
        long lease = q.leaseSeconds() == null ? DEFAULT_LEASE_SECONDS : q.leaseSeconds();
        if (lease < 1) {
            throw new BlksnapException(Errno.EINVAL, "leaseSeconds (" + lease + ") must be >= 1");
        }
        String launchedAt = q.launchedAt() != null ? q.launchedAt() : epochNow();
        checkHeap(args);
        synchronized (jobs) {
            if (closed) {
                throw new BlksnapException(Errno.ESHUTDOWN, "the daemon is stopping: the agent starts no job");
            }
            long running = jobs.values().stream().filter(j -> !j.ended()).count();
            if (running >= MAX_JOBS) {
                throw new BlksnapException(Errno.EAGAIN, "the agent runs " + running + " jobs already (the limit); "
                        + "try again when one has ended");
            }
            UUID id = UUID.randomUUID();
            Job job = new Job(id, args, q.args(), Map.of("BLKSNAP_LAUNCHED_AT", launchedAt, org.blksnap.cli.Main.AGENT_JOB_ENV, id.toString()),
                    Boolean.TRUE.equals(q.terminal()), lease, images);
            jobs.put(job.id(), job);
            job.start();
            LOG.info("agent job {} started: {}", job.id(), String.join(" ", args));
            return new Replies.AgentJob(job.id());
        }
    }

    @Override
    public Replies.AgentOutput await(Requests.AgentWait q) {
        Job job = job(q.id());
        Replies.AgentOutput out;
        try {
            out = job.await(Math.max(0, q.timeoutMs()));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new BlksnapException(Errno.EINTR, "the wait for agent job " + q.id() + " was interrupted");
        }
        if (out.exitStatus() != null) {
            jobs.remove(q.id(), job);
        }
        return out;
    }

    @Override
    public void cancel(Requests.AgentCancel q) {
        job(q.id()).cancel("cancelled by its caller");
    }

    @Override
    public List<Replies.AgentJobStatus> jobs() {
        return jobs.values().stream().map(Job::status)
                .sorted(java.util.Comparator.comparingLong(Replies.AgentJobStatus::startedAtMillis)).toList();
    }

    /** Jobs known now (running, or ended and not yet collected). */
    int jobCount() {
        return jobs.size();
    }

    @Override
    public void close() {
        synchronized (jobs) {
            closed = true;
        }
        reaper.interrupt();
        for (Job j : jobs.values()) {
            j.cancel("the daemon is stopping");
        }
        for (Job j : jobs.values()) {
            try {
                if (!j.join(CLOSE_WAIT)) {
                    LOG.warn("agent job {} did not end within {} s of its cancel", j.id(), CLOSE_WAIT.toSeconds());
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    private Job job(UUID id) {
        Job job = jobs.get(id);
        if (job == null) {
            throw new BlksnapException(Errno.ESRCH, "no agent job " + id + " (it ended and was collected, or its "
                    + "lease ran out)");
        }
        return job;
    }

    /** The arguments to run: {@code backup}, this daemon's socket, the agent off, then the caller's. */
    private List<String> checked(List<String> args) {
        if (args.isEmpty() || !args.getFirst().equals("backup")) {
            throw new BlksnapException(Errno.EINVAL, "the agent runs only `backup`, not `"
                    + (args.isEmpty() ? "" : args.getFirst()) + "`");
        }
        for (int i = 1; i < args.size(); i++) {
            String a = args.get(i);
            String name = a.contains("=") ? a.substring(0, a.indexOf('=')) : a;
            if (AGENT_OPTIONS.contains(name)) {
                throw new BlksnapException(Errno.EINVAL, "the agent sets " + name + " itself; leave it out of the job's arguments");
            }
            if (PATH_OPTIONS.contains(name)) {
                String value = a.contains("=") ? a.substring(a.indexOf('=') + 1) : i + 1 < args.size() ? args.get(i + 1) : "";
                if (!value.startsWith("/") && !(name.equals("--repo") && value.startsWith("s3://"))) {
                    throw new BlksnapException(Errno.EINVAL, name + " " + value + " must be an absolute path: the "
                            + "agent's working directory is the daemon's");
                }
            }
        }
        List<String> out = new ArrayList<>(List.of("backup", "--control", controlSocket.toString(), "--agent", "off"));
        out.addAll(args.subList(1, args.size()));
        return out;
    }

    /**
     * Refuses a job whose devices would need more heap than the daemon can spare (half of what is
     * free below its maximum heap, so the daemon's own work keeps the rest): a backup must never
     * take the block devices' server down with an OutOfMemoryError. ENOMEM, with what it would need;
     * the tool then backs up in its own process ({@code --agent auto}).
     */
    private void checkHeap(List<String> args) {
        List<String> devices = new ArrayList<>();
        for (int i = 0; i < args.size(); i++) {
            if (args.get(i).equals("--device") && i + 1 < args.size()) {
                devices.add(args.get(i + 1));
            } else if (args.get(i).startsWith("--device=")) {
                devices.add(args.get(i).substring("--device=".length()));
            }
        }
        long need = Math.ceilDiv(devicesBytes.applyAsLong(devices), ESTIMATE_CHUNK_BYTES) * HEAP_BYTES_PER_CHUNK;
        Runtime rt = Runtime.getRuntime();
        long spare = (rt.maxMemory() - (rt.totalMemory() - rt.freeMemory())) / 2;
        if (need > spare) {
            throw new BlksnapException(Errno.ENOMEM, "a backup of " + String.join(", ", devices) + " needs about "
                    + (need >> 20) + " MiB of heap; the daemon can spare " + (spare >> 20) + " MiB (raise its -Xmx "
                    + "through BLKSNAPD_JAVA_OPTS, or back up with --agent off)");
        }
    }

    private static String epochNow() {
        java.time.Instant now = java.time.Instant.now();
        return now.getEpochSecond() + "." + String.format("%09d", now.getNano());
    }

    /** Cancels jobs whose lease ran out and forgets ended ones nobody collected within theirs. */
    private void reap() {
        while (!Thread.currentThread().isInterrupted()) {
            try {
                Thread.sleep(500);
            } catch (InterruptedException e) {
                return;
            }
            long now = System.nanoTime();
            for (Job j : jobs.values()) {
                if (j.leaseExpired(now)) {
                    if (j.ended()) {
                        if (jobs.remove(j.id(), j)) {
                            LOG.info("agent job {} forgotten: its end was not collected within its lease", j.id());
                        }
                    } else {
                        j.cancel("its lease ran out (no agent/wait for " + j.leaseSeconds() + " s: the caller died?)");
                    }
                }
            }
        }
    }
}
