package org.blksnap.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Runs this call of the tool once more, in a JVM with the optimizing compiler.
 *
 * <p>The launcher ({@code bin/blksnap}) starts {@code backup} with the quick compiler only (C1: about
 * 40 ms less per call, docs/benchmarks-log.md, "The incremental with a quick relay") because the
 * daemon's resident agent usually does the work and this process only relays it; it then names
 * itself in {@link #LAUNCHER_ENV}. When the backup is to run in this process after all (the agent
 * refused, or an S3 repository or
 * {@code --agent off} written in a form the launcher does not look for), hashing and compressing
 * with C1 alone would run at about half speed, so the tool hands the same arguments to the launcher
 * again with {@link #IN_PROCESS_ENV} set (the launcher then starts a JVM with C2, and the backup
 * does not ask the agent a second time; the variable naming the launcher is removed, so it happens
 * once), waits for that process and ends with its exit status. The child
 * inherits stdin, and stdout and stderr when this run writes to the process's own; otherwise (a
 * test's captured streams) its output is copied into this run's. A signal that ends this process
 * first stops the child (SIGTERM: it destroys its snapshot, as a backup stopped by a signal does)
 * and waits for it.
 *
 * <p>Not thread-safe: one call per run.
 */
final class Relaunch {
    /** Set by the launcher when it started a quick JVM: the launcher's path. */
    static final String LAUNCHER_ENV = "BLKSNAP_QUICK_JVM_LAUNCHER";
    /**
     * Set in the child's environment to the first process's pid: the launcher starts the optimizing
     * compiler and keeps the first launch's clock, {@code backup --agent auto} runs in the process,
     * and the child ends with the first process ({@link #endWithParent}).
     */
    static final String IN_PROCESS_ENV = "BLKSNAP_IN_PROCESS_BACKUP";
    /** How long a signalled parent waits for its child to clean up, in seconds. */
    private static final long CHILD_STOP_SECONDS = 60;

    private Relaunch() {
    }

    /**
     * Runs {@code launcher args...} with this run's environment (minus {@link #LAUNCHER_ENV}, plus
     * {@link #IN_PROCESS_ENV}) and returns its exit status (128 + the signal's number when it
     * was killed).
     *
     * @throws Cli.LocalIoException the launcher could not be started (named in the message)
     */
    static int withFullCompiler(Tool tool, String launcher, List<String> args) throws Cli.LocalIoException, InterruptedException {
        PrintWriter out = tool.out();
        PrintWriter err = tool.err();
        List<String> command = new ArrayList<>(args.size() + 1);
        command.add(launcher);
        command.addAll(args);
        ProcessBuilder pb = new ProcessBuilder(command).redirectInput(ProcessBuilder.Redirect.INHERIT);
        Map<String, String> env = pb.environment();
        env.clear();
        env.putAll(tool.environment());
        env.remove(LAUNCHER_ENV);
        env.put(IN_PROCESS_ENV, Long.toString(ProcessHandle.current().pid()));
        boolean inherit = tool.terminal() instanceof Main.Terminal.Local local && local.systemOut();
        if (inherit) {
            out.flush();
            err.flush();
            pb.redirectOutput(ProcessBuilder.Redirect.INHERIT).redirectError(ProcessBuilder.Redirect.INHERIT);
        }
        Process child;
        try {
            child = pb.start();
        } catch (IOException e) {
            throw new Cli.LocalIoException("cannot start " + launcher + " again for an in-process backup: " + e.getMessage(), e);
        }
        Thread hook = new Thread(() -> stop(child), "blksnap-relaunch-stop");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            List<Thread> copies = inherit ? List.of()
                    : List.of(copy(child.getInputStream(), out), copy(child.getErrorStream(), err));
            int status = child.waitFor();
            for (Thread t : copies) {
                t.join();
            }
            return status;
        } finally {
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException e) {
                // the JVM is shutting down: the hook stops the child
            }
        }
    }

    /**
     * In the relaunched process: when the process that started it ends first (killed outright, as
     * kill -9 of the tool), this one stops as a signalled backup does (its shutdown hooks destroy
     * the snapshot; no point is written), instead of backing up on as an orphan. {@code parentPid}
     * is {@link #IN_PROCESS_ENV}'s value; a value that is not a live process's pid (that process
     * already gone) stops this one at once.
     */
    static void endWithParent(Tool tool, String parentPid) {
        long pid;
        try {
            pid = Long.parseLong(parentPid.trim());
        } catch (NumberFormatException e) {
            return; // not set by this class: nothing to follow
        }
        if (pid == ProcessHandle.current().pid()) {
            return; // not set by this class either: a process is not its own parent
        }
        java.util.Optional<ProcessHandle> parent = ProcessHandle.of(pid).filter(ProcessHandle::isAlive);
        Runnable stop = () -> {
            tool.err().println("blksnap: backup: the tool that started this backup (pid " + pid + ") ended; stopping");
            tool.err().flush();
            System.exit(ExitCodes.SIGNALLED);
        };
        if (parent.isEmpty()) {
            stop.run();
        } else {
            parent.get().onExit().thenRun(stop);
        }
    }

    private static void stop(Process child) {
        child.destroy();
        try {
            if (!child.waitFor(CHILD_STOP_SECONDS, TimeUnit.SECONDS)) {
                child.destroyForcibly();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static Thread copy(InputStream from, PrintWriter to) {
        return Thread.ofVirtual().name("blksnap-relaunch-copy").start(() -> {
            try (InputStreamReader r = new InputStreamReader(from, StandardCharsets.UTF_8)) {
                char[] buf = new char[8192];
                for (int n; (n = r.read(buf)) >= 0; ) {
                    to.write(buf, 0, n);
                    to.flush();
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }
}
