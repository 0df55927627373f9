package org.blksnap.cli;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Runs the blksnap tool in-process against a control socket and captures what it prints. */
public record CliRun(int exitCode, String out, String err) {

    public static CliRun run(Path control, String... args) {
        return run(Map.of(), control, args);
    }

    /** {@link #run(Path, String...)} with these environment variables (the tool sees no others). */
    public static CliRun run(Map<String, String> env, Path control, String... args) {
        List<String> all = new ArrayList<>();
        if (control != null) {
            all.add("--control");
            all.add(control.toString());
        }
        all.addAll(List.of(args));
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        int rc = Main.run(all.toArray(String[]::new), new PrintStream(o, true, StandardCharsets.UTF_8),
                new PrintStream(e, true, StandardCharsets.UTF_8), env);
        return new CliRun(rc, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
    }

    /** The output, trimmed. */
    public String line() {
        return out.trim();
    }

    @Override
    public String toString() {
        return "exit " + exitCode + "\nstdout: " + out + "\nstderr: " + err;
    }
}
