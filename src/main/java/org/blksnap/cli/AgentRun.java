package org.blksnap.cli;

import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.blksnap.ctrl.api.Replies;
import org.blksnap.ctrl.api.Requests;

/**
 * The tool's side of the resident backup agent: hands a {@code backup} to the daemon
 * ({@code agent/start}), relays its output as it comes ({@code agent/wait}, which also keeps the
 * job's lease) and exits with its exit status. Ctrl-C or SIGTERM cancels the job
 * ({@code agent/cancel}; the agent destroys the snapshot and writes no point) and relays its last
 * words; a tool killed outright stops renewing the lease, and the agent cancels the job when it runs
 * out. Not thread-safe: {@link #run} once per command.
 */
final class AgentRun {
    /** Longest single {@code agent/wait}, in milliseconds (output is relayed as soon as there is some). */
    static final long WAIT_MS = 1000;
    /**
     * Refusals after which {@code --agent auto} backs up in this process instead: EPERM (this user
     * may not), ENOTSUP (no agent), ENOMEM (the daemon cannot spare the heap), ENOENT (a daemon older
     * than the agent: "unknown operation", as after a package upgrade before the service restarts).
     */
    private static final Set<String> FALL_BACK = Set.of("EPERM", "ENOTSUP", "ENOMEM", "ENOENT");

    private AgentRun() {
    }

    /**
     * Runs {@code args} in the agent.
     *
     * @param fallBack whether a daemon that will not run the job (EPERM: this user may not; ENOTSUP:
     *                 no agent; ENOMEM: its heap cannot spare what the devices need; ENOENT: it does
     *                 not know the operation) means "back up in this process" (returns null) rather than a failure
     * @return the job's exit status, or null when the agent refused and {@code fallBack} is set
     * @throws ControlClient.RemoteException the agent refused the job (or lost it: ESRCH)
     */
    static Integer run(Cli cli, Tool tool, List<String> args, long leaseSeconds, boolean fallBack) throws Exception {
        UUID id;
        try {
            id = cli.call(new Requests.AgentStart(args, tool.terminal().isTerminal() ? Boolean.TRUE : null,
                    tool.env("BLKSNAP_LAUNCHED_AT"), leaseSeconds)).id();
        } catch (ControlClient.RemoteException e) {
            if (fallBack && FALL_BACK.contains(e.errnoName())) {
                if (e.errnoName().equals("ENOMEM")) {
                    cli.warn("backup: " + e.getMessage() + "; backing up in this process");
                }
                return null;
            }
            throw e;
        }
        long waitMs = Math.max(100, Math.min(WAIT_MS, leaseSeconds * 1000 / 4));
        CountDownLatch ended = new CountDownLatch(1);
        Thread hook = new Thread(() -> cancel(cli, id, ended), "blksnap-agent-cancel");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            while (true) {
                Replies.AgentOutput o = cli.call(new Requests.AgentWait(id, waitMs));
                cli.relay(o.stdout(), o.stderr());
                if (o.exitStatus() != null) {
                    ended.countDown();
                    return o.exitStatus();
                }
            }
        } finally {
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException e) {
                // the JVM is shutting down: the hook cancels the job
            }
        }
    }

    /**
     * Cancels the job unless it ended, then waits (at most 10 s) until the command's own loop has
     * relayed the job's last words and its end: that loop stays the only reader of the output.
     */
    private static void cancel(Cli cli, UUID id, CountDownLatch ended) {
        if (ended.getCount() == 0) {
            return;
        }
        try {
            cli.call(new Requests.AgentCancel(id));
        } catch (Exception e) {
            cli.warn("backup: cannot cancel the agent's job " + id + ": " + e.getMessage()
                    + " (the agent cancels it when its lease runs out)");
            return;
        }
        try {
            ended.await(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
