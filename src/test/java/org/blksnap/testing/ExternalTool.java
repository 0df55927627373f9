package org.blksnap.testing;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;

/**
 * Runs external programs (qemu-img, nbdinfo, fio, mkfs, ...) from tests: always with a timeout
 * (the whole process tree is killed when it expires), with stdout and stderr captured to files
 * (no pipe can fill up and block the child), and with {@code /usr/sbin:/usr/bin:/sbin:/bin}
 * first on PATH so that scripts such as {@code nbdsh} find the system {@code python3} that has the
 * libnbd bindings rather than a pyenv one.
 *
 * <p>{@link #require(String...)} makes a missing tool a skipped test on a developer machine and
 * a failed test in CI (when the {@code CI} environment variable is set), because CI installs them.
 */
public final class ExternalTool {
    /** Directories put in front of PATH for every child. */
    public static final String SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

    private ExternalTool() {
    }

    /**
     * What a finished (or killed) process produced.
     *
     * @param timedOut true if the process was killed at the timeout (exitCode is then -1)
     */
    public record Result(List<String> command, int exitCode, String stdout, String stderr, boolean timedOut) {
        /** Returns this if the process exited 0, else fails with the command and its output. */
        public Result assertSuccess() {
            if (exitCode != 0 || timedOut) {
                throw new AssertionError(describe());
            }
            return this;
        }

        /** The command, exit status and both outputs, for assertion messages. */
        public String describe() {
            return "command " + String.join(" ", command) + (timedOut ? " timed out" : " exited " + exitCode)
                    + "\n--- stdout ---\n" + stdout + "\n--- stderr ---\n" + stderr;
        }
    }

    /** Whether an executable of that name is on the system PATH (or is an absolute path). */
    public static boolean available(String tool) {
        if (tool.startsWith("/")) {
            return Files.isExecutable(Path.of(tool));
        }
        String path = SYSTEM_PATH + ":" + System.getenv().getOrDefault("PATH", "");
        for (String dir : path.split(":")) {
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, tool))) {
                return true;
            }
        }
        return false;
    }

    /** Whether tests run in CI (environment variable {@code CI} set and non-empty). */
    public static boolean inCi() {
        String ci = System.getenv("CI");
        return ci != null && !ci.isEmpty();
    }

    /**
     * Skips the calling test (assumption failure) when a tool is missing, or fails it in CI.
     * Also checks for root when {@code "root"} is among the names.
     */
    public static void require(String... tools) {
        for (String tool : tools) {
            boolean ok = tool.equals("root") ? isRoot() : available(tool);
            String what = tool.equals("root") ? "this test needs root" : tool + " is not installed";
            if (!ok) {
                if (inCi()) {
                    throw new AssertionError(what + " (CI is set, so this is a failure, not a skip)");
                }
                Assumptions.abort(what);
            }
        }
    }

    /** Whether the JVM runs as root (uid 0). */
    public static boolean isRoot() {
        try {
            Object uid = Files.getAttribute(Path.of("/proc/self"), "unix:uid");
            return uid instanceof Integer i && i == 0;
        } catch (IOException | UnsupportedOperationException e) {
            return false;
        }
    }

    /** Runs a command and waits for it, at most {@code timeout}. */
    public static Result run(Duration timeout, String... command) {
        return run(timeout, Map.of(), null, List.of(command));
    }

    /** Runs a command and waits for it, at most {@code timeout}. */
    public static Result run(Duration timeout, List<String> command) {
        return run(timeout, Map.of(), null, command);
    }

    /**
     * Runs a command with extra environment variables in a directory (null: the current one) and
     * waits for it, at most {@code timeout}; then the process and all its descendants are killed.
     */
    public static Result run(Duration timeout, Map<String, String> env, Path dir, List<String> command) {
        Path out = null;
        Path err = null;
        try {
            out = Files.createTempFile("tool-out", ".txt");
            err = Files.createTempFile("tool-err", ".txt");
            ProcessBuilder pb = builder(env, dir, command);
            pb.redirectOutput(out.toFile()).redirectError(err.toFile()).redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
            Process p = pb.start();
            boolean done = p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (!done) {
                killTree(p);
            }
            return new Result(List.copyOf(command), done ? p.exitValue() : -1, Files.readString(out, StandardCharsets.UTF_8),
                    Files.readString(err, StandardCharsets.UTF_8), !done);
        } catch (IOException e) {
            throw new AssertionError("cannot run " + String.join(" ", command) + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted while running " + String.join(" ", command), e);
        } finally {
            deleteQuietly(out);
            deleteQuietly(err);
        }
    }

    /**
     * Starts a long-running command (a server, nbdfuse) with stdout and stderr appended to
     * {@code logFile}. The caller must stop it with {@link #killTree(Process)}.
     */
    public static Process start(Map<String, String> env, Path dir, List<String> command, Path logFile) throws IOException {
        ProcessBuilder pb = builder(env, dir, command);
        pb.redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        return pb.start();
    }

    /** Kills a process and its descendants (TERM, then KILL after 2 s) and waits for them. */
    public static void killTree(Process p) {
        if (p == null) {
            return;
        }
        List<ProcessHandle> all = new ArrayList<>(p.descendants().toList());
        all.add(p.toHandle());
        all.forEach(ProcessHandle::destroy);
        long deadline = System.nanoTime() + Duration.ofSeconds(2).toNanos();
        for (ProcessHandle h : all) {
            try {
                long left = Math.max(1, deadline - System.nanoTime());
                h.onExit().get(left, TimeUnit.NANOSECONDS);
            } catch (Exception e) {
                h.destroyForcibly();
            }
        }
        try {
            p.waitFor(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static ProcessBuilder builder(Map<String, String> env, Path dir, List<String> command) {
        ProcessBuilder pb = new ProcessBuilder(command);
        Map<String, String> e = pb.environment();
        e.put("PATH", SYSTEM_PATH + ":" + e.getOrDefault("PATH", ""));
        e.putAll(env);
        if (dir != null) {
            pb.directory(dir.toFile());
        }
        return pb;
    }

    private static void deleteQuietly(Path p) {
        if (p != null) {
            try {
                Files.deleteIfExists(p);
            } catch (IOException e) {
                // temp file; nothing to do
            }
        }
    }
}
