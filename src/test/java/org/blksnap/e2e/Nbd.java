package org.blksnap.e2e;

import java.time.Duration;
import org.blksnap.testing.ExternalTool;

/** Raw I/O on exports with qemu-io, as the upstream raw tests do with dd on /dev/blksnap-image0. */
final class Nbd {
    private Nbd() {
    }

    /** Runs qemu-io commands (for example {@code write -P 0xab 126k 1M}) against an export URI. */
    static ExternalTool.Result qemuIo(String uri, String... commands) {
        java.util.List<String> cmd = new java.util.ArrayList<>(java.util.List.of("qemu-io", "-f", "raw", "-t", "none"));
        for (String c : commands) {
            cmd.add("-c");
            cmd.add(c);
        }
        cmd.add(uri);
        return ExternalTool.run(Duration.ofSeconds(60), cmd);
    }

    /** Runs qemu-io and fails unless it succeeded without a pattern mismatch or I/O error. */
    static void qemuIoOk(String uri, String... commands) {
        ExternalTool.Result r = qemuIo(uri, commands).assertSuccess();
        if (r.stdout().contains("Pattern verification failed") || r.stdout().contains("error")
                || r.stderr().contains("error")) {
            throw new AssertionError(r.describe());
        }
    }
}
