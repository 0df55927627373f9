package org.blksnap.fuzz;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * The bounded fuzzing run of every test run (CI): each target is fuzzed by Jazzer's driver,
 * coverage-guided, for {@code -Dblksnap.fuzz.seconds} (default {@value #DEFAULT_SECONDS} s), from its
 * regression corpus. Asserted: nothing found (no crash, no hang, no memory bound exceeded, no
 * unexpected failure; see the targets), inputs were really executed, and coverage was measured
 * (so the instrumentation works on these class files). Longer runs: {@code bin/fuzz}.
 */
@Timeout(value = 10, unit = TimeUnit.MINUTES)
class FuzzTargetsBoundedRunTest {
    static final int DEFAULT_SECONDS = 20;

    @TempDir
    Path work;

    /** Copies the findings and the log out of the temporary directory, for CI to keep. */
    private static void keep(String target, FuzzRun.Result r) throws java.io.IOException {
        Path to = java.nio.file.Files.createDirectories(Path.of("target", "fuzz-findings", target));
        java.nio.file.Files.copy(r.log(), to.resolve("log"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        for (Path f : r.findings()) {
            java.nio.file.Files.copy(f, to.resolve(f.getFileName()), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"handshake", "transmission", "control"})
    void fuzzingFindsNothing(String target) throws Exception {
        int seconds = Integer.getInteger("blksnap.fuzz.seconds", DEFAULT_SECONDS);
        FuzzRun.Result r = FuzzRun.run(target, Duration.ofSeconds(seconds), work.resolve(target),
                Path.of("src/test/resources"));
        System.out.println(r);
        if (!r.findings().isEmpty() || r.exitCode() != 0) {
            keep(target, r);
        }
        assertThat(r.findings()).as("findings of %s, kept in target/fuzz-findings/%s: %s", target, target,
                FuzzRun.findingsExcerpt(r.log())).isEmpty();
        assertThat(r.exitCode()).as("%s", r).isZero();
        assertThat(r.inputs()).as("%s", r).isGreaterThan(100);
        assertThat(r.coverage()).as("coverage is measured: %s", r).isGreaterThan(100);
    }
}
