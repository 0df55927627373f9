package org.blksnap.fuzz;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Runs one fuzz target with Jazzer's driver (libFuzzer, coverage-guided, in a child JVM with the
 * current class path) for a given time, and reads its figures: inputs tried, coverage (edges and
 * features), corpus size, findings. Used by {@code bin/fuzz} (long runs) and by
 * {@link FuzzTargetsBoundedRunTest} (the bounded run in every test run).
 *
 * <p>Work directory per target: {@code corpus/} (grows with every input that reached new
 * coverage, kept between runs), {@code crash-*} and {@code timeout-*} (findings, each to be turned
 * into a seed of the target's regression corpus plus a fix), {@code log} (the driver's output).
 * The driver keeps going after a finding ({@code --keep_going}), so one run reports all it finds.
 */
public final class FuzzRun {
    /** The targets by short name: class, and its regression corpus under src/test/resources. */
    public static final Map<String, String[]> TARGETS = Map.of(
            "handshake", new String[] {"org.blksnap.nbd.NbdHandshakeFuzzTest",
                    "org/blksnap/nbd/NbdHandshakeFuzzTestInputs/handshake"},
            "transmission", new String[] {"org.blksnap.nbd.NbdTransmissionFuzzTest",
                    "org/blksnap/nbd/NbdTransmissionFuzzTestInputs/transmission"},
            "control", new String[] {"org.blksnap.ctrl.ControlApiFuzzTest",
                    "org/blksnap/ctrl/ControlApiFuzzTestInputs/requestBody"});

    /**
     * What a run did.
     *
     * @param inputs   inputs executed
     * @param coverage edges covered at the end ({@code cov:}), -1 if not reported
     * @param features coverage features ({@code ft:}), -1 if not reported
     * @param corpus   inputs in the corpus at the end
     * @param findings crash and timeout files written
     * @param exitCode the driver's exit code (0: nothing found)
     */
    public record Result(String target, Duration ran, long inputs, long coverage, long features, long corpus,
                         List<Path> findings, int exitCode, Path log) {
        @Override
        public String toString() {
            return target + ": " + inputs + " inputs in " + ran.toSeconds() + " s, cov " + coverage + ", ft " + features
                    + ", corpus " + corpus + ", findings " + findings.size() + " " + findings + ", exit " + exitCode
                    + " (log " + log + ")";
        }
    }

    private FuzzRun() {
    }

    /** {@code FuzzRun TARGET|all SECONDS WORKDIR}: prints one line of figures per target; exit 1 if anything was found. */
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: FuzzRun TARGET|all SECONDS WORKDIR; targets: " + TARGETS.keySet());
            System.exit(64);
        }
        List<String> targets = args[0].equals("all") ? List.of("handshake", "transmission", "control") : List.of(args[0]);
        boolean found = false;
        for (String t : targets) {
            Result r = run(t, Duration.ofSeconds(Long.parseLong(args[1])), Path.of(args[2]).resolve(t),
                    Path.of("src/test/resources"));
            System.out.println(r);
            found |= r.exitCode() != 0 || !r.findings().isEmpty();
        }
        System.exit(found ? 1 : 0);
    }

    /**
     * Fuzzes {@code target} for {@code time} in {@code workDir}, starting from its regression corpus
     * under {@code resources} and the corpus a previous run left in {@code workDir}.
     */
    public static Result run(String target, Duration time, Path workDir, Path resources)
            throws IOException, InterruptedException {
        String[] t = TARGETS.get(target);
        if (t == null) {
            throw new IllegalArgumentException("target '" + target + "' must be one of " + TARGETS.keySet());
        }
        Path corpus = Files.createDirectories(workDir.resolve("corpus"));
        Path log = workDir.resolve("log");
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED",
                "-XX:+EnableDynamicAgentLoading", "-Xmx1g", "-XX:MaxDirectMemorySize=1g", "-XX:+UseParallelGC",
                "-XX:-OmitStackTraceInFastThrow", "-Dlogback.configurationFile=logback-fuzz.xml",
                "-cp", System.getProperty("java.class.path"),
                "com.code_intelligence.jazzer.Jazzer", "--target_class=" + t[0],
                "--instrumentation_includes=org.blksnap.**", "--keep_going=1000",
                "-max_total_time=" + Math.max(1, time.toSeconds()), "-timeout=300", "-rss_limit_mb=6144",
                "-print_final_stats=1", "-artifact_prefix=" + workDir.toAbsolutePath() + "/",
                corpus.toString(), resources.resolve(t[1]).toString()));
        long start = System.nanoTime();
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        if (!p.waitFor(time.toSeconds() + 300, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("the fuzzer of " + target + " did not stop within 5 min of its time; see " + log);
        }
        Duration ran = Duration.ofNanos(System.nanoTime() - start);
        String out = Files.readString(log);
        long inputs = last(out, "stat::number_of_executed_units:\\s+(\\d+)");
        long cov = last(out, " cov: (\\d+)");
        long ft = last(out, " ft: (\\d+)");
        long corp = last(out, " corp: (\\d+)/");
        List<Path> findings;
        try (Stream<Path> s = Files.list(workDir)) {
            findings = s.filter(f -> f.getFileName().toString().matches("(crash|timeout|oom|leak|slow-unit)-.*")
                    || f.getFileName().toString().startsWith("Crash_")).sorted().toList();
        }
        return new Result(target, ran, inputs, cov, ft, corp, findings, p.exitValue(), log);
    }

    /** The exceptions the driver reported in {@code log} (the lines after each "== Java Exception"), for a message. */
    public static String findingsExcerpt(Path log) throws IOException {
        StringBuilder sb = new StringBuilder();
        List<String> lines = Files.readAllLines(log);
        for (int i = 0; i < lines.size(); i++) {
            if (lines.get(i).startsWith("== Java Exception") || lines.get(i).contains("ERROR: libFuzzer")) {
                for (int j = i; j < Math.min(lines.size(), i + 12); j++) {
                    sb.append(lines.get(j)).append('\n');
                }
            }
        }
        return sb.toString();
    }

    private static long last(String text, String regex) {
        Matcher m = Pattern.compile(regex).matcher(text);
        long v = -1;
        while (m.find()) {
            v = Long.parseLong(m.group(1));
        }
        return v;
    }
}
