package org.blksnap.ctrl;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.TakeHooks;
import org.blksnap.util.FirstFailure;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Take hooks that freeze filesystems around the take barrier: {@code fsfreeze -f MP} for each mount
 * point just before the barrier, {@code fsfreeze -u MP} for each one that was frozen right after it,
 * whether the take worked or not. If one freeze fails, the take is aborted and the ones already
 * frozen are thawed (the engine calls {@link #afterBarrier()} in that case too).
 *
 * <p>Not thread-safe: one instance per take.
 */
public final class FreezeHooks implements TakeHooks {
    private static final Logger LOG = LoggerFactory.getLogger(FreezeHooks.class);

    /** Runs a command and returns its exit status and output; tests substitute a fake. */
    @FunctionalInterface
    public interface CommandRunner {
        Result run(List<String> command) throws IOException, InterruptedException;

        record Result(int exitCode, String output) {
        }

        /** Runs the command as a process, stdout and stderr merged, with a 60 s limit. */
        CommandRunner PROCESS = command -> {
            Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
            byte[] out = p.getInputStream().readAllBytes();
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                return new Result(-1, "timed out after 60 s");
            }
            return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8).trim());
        };
    }

    private final List<Path> mountPoints;
    private final CommandRunner runner;
    private final List<Path> frozen = new ArrayList<>();

    private FreezeHooks(List<Path> mountPoints, CommandRunner runner) {
        this.mountPoints = List.copyOf(mountPoints);
        this.runner = runner;
    }

    /**
     * Hooks that freeze these mount points, checked before anything is frozen (fsfreeze is the
     * daemon's business, not the engine's, so the daemon checks its arguments).
     *
     * @param mountPoints absolute paths
     * @throws BlksnapException ENOENT naming the first mount point that is not a directory
     */
    public static FreezeHooks of(List<Path> mountPoints, CommandRunner runner) {
        for (Path mp : mountPoints) {
            if (!Files.isDirectory(mp)) {
                throw new BlksnapException(Errno.ENOENT, "freeze mount point " + mp + " is not a directory");
            }
        }
        return new FreezeHooks(mountPoints, runner);
    }

    /** The mount points frozen and not yet thawed (for tests). */
    List<Path> frozen() {
        return List.copyOf(frozen);
    }

    @Override
    public void beforeBarrier() throws Exception {
        for (Path mp : mountPoints) {
            CommandRunner.Result r = runner.run(List.of("fsfreeze", "-f", mp.toString()));
            if (r.exitCode() != 0) {
                throw new BlksnapException(Errno.EIO, "fsfreeze -f " + mp + " failed (exit " + r.exitCode() + "): "
                        + r.output());
            }
            LOG.info("froze {}", mp);
            frozen.add(mp);
        }
    }

    /**
     * Thaws every mount point still frozen, going on past failures.
     *
     * @throws BlksnapException EIO for the first thaw that failed (the later ones are suppressed in
     *                          it); a runner failure is rethrown as it is
     */
    @Override
    public void afterBarrier() throws Exception {
        FirstFailure failures = new FirstFailure();
        for (Path mp : List.copyOf(frozen)) {
            failures.run(() -> thaw(mp));
        }
        failures.throwIfAny(Exception.class, e -> e);
    }

    private void thaw(Path mp) throws IOException, InterruptedException {
        CommandRunner.Result r = runner.run(List.of("fsfreeze", "-u", mp.toString()));
        if (r.exitCode() != 0) {
            LOG.error("fsfreeze -u {} failed (exit {}): {}", mp, r.exitCode(), r.output());
            throw new BlksnapException(Errno.EIO, "fsfreeze -u " + mp + " failed (exit " + r.exitCode() + "): "
                    + r.output());
        }
        LOG.info("thawed {}", mp);
        frozen.remove(mp);
    }
}
