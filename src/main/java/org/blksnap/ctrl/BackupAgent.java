package org.blksnap.ctrl;

import org.blksnap.ctrl.api.Replies;
import org.blksnap.ctrl.api.Requests;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;

/**
 * The resident backup agent as the control API sees it: {@code agent/start}, {@code agent/wait} and
 * {@code agent/cancel} are handed to it. The daemon installs one ({@code org.blksnap.agent.Agent})
 * once its control socket is up ({@link ControlServer#serveAgent}); until then, and in a control
 * server without one, every agent operation is refused with ENOTSUP. The control API knows nothing
 * of backups: what a job runs is the agent's business.
 *
 * <p>Implementations must be thread-safe: requests run concurrently on virtual threads.
 */
public interface BackupAgent {
    /** Refuses every operation: ENOTSUP. */
    BackupAgent NONE = new BackupAgent() {
        @Override
        public Replies.AgentJob start(AccessPolicy.Caller caller, Requests.AgentStart request) {
            throw notServed();
        }

        @Override
        public Replies.AgentOutput await(Requests.AgentWait request) {
            throw notServed();
        }

        @Override
        public void cancel(Requests.AgentCancel request) {
            throw notServed();
        }

        private static BlksnapException notServed() {
            return new BlksnapException(Errno.ENOTSUP, "this daemon runs no backup agent");
        }
    };

    /** The jobs known now (running, or ended and not collected), oldest first. */
    default java.util.List<Replies.AgentJobStatus> jobs() {
        return java.util.List.of();
    }

    /**
     * Starts a job.
     *
     * @throws BlksnapException EPERM the caller may not start jobs; EINVAL arguments the agent does
     *                          not run; ESHUTDOWN the daemon is stopping
     */
    Replies.AgentJob start(AccessPolicy.Caller caller, Requests.AgentStart request);

    /**
     * Waits for a job's output or end (at most {@code timeoutMs}) and renews its lease.
     *
     * @throws BlksnapException ESRCH no such job
     */
    Replies.AgentOutput await(Requests.AgentWait request);

    /**
     * Cancels a job; its end is still reported by {@link #await}.
     *
     * @throws BlksnapException ESRCH no such job
     */
    void cancel(Requests.AgentCancel request);
}
