package org.blksnap.training;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.blksnap.cli.Main;
import org.blksnap.daemon.Daemon;
import org.blksnap.daemon.DaemonConfig;
import org.blksnap.daemon.DeviceSpec;
import org.blksnap.util.FileTrees;

/**
 * The backup part of the tool's class-data training ({@code bin/blksnap} runs it after the command
 * training, in the same archiving JVM): what a backup loads cannot be reached with a stand-in
 * daemon (NBD reads of a snapshot image, the CBT map, hashing, zstd, packs, the index tree), so it
 * starts a real daemon in-process in a temporary directory with one small device, and runs, through
 * {@link Main#run} as the tool does, a full backup, a CBT-incremental one, points, verify and restore,
 * in text and JSON. A small incremental then starts with those classes already archived instead of
 * loading and linking several hundred. It lives in a package of its own because it needs both sides of
 * the wire contract, which the tool and the daemon never do.
 */
public final class BackupTraining {
    private static final long DEVICE_BYTES = 8L << 20;

    private BackupTraining() {
    }

    /**
     * Runs the training in a temporary directory it removes.
     *
     * @return how many calls did not exit 0
     */
    public static int run() throws IOException {
        Path dir = Files.createTempDirectory("blksnap-backup-training");
        try {
            Path image = dir.resolve("disk0.img");
            byte[] content = new byte[(int) DEVICE_BYTES];
            Random random = new Random(1);
            random.nextBytes(content);
            byte[] line = "backup training text, compressible enough for zstd to take it\n".getBytes(StandardCharsets.US_ASCII);
            for (int at = content.length / 2; at < content.length; at += line.length) {
                System.arraycopy(line, 0, content, at, Math.min(line.length, content.length - at));
            }
            Files.write(image, content);
            Path data = dir.resolve("data");
            DaemonConfig config = new DaemonConfig(data, List.of(DeviceSpec.parse("disk0=" + image, dir)), null,
                    data.resolve("nbd.sock"), data.resolve("control.sock"), List.of(), null, false, "ERROR");
            int failures = 0;
            try (Daemon daemon = Daemon.start(config)) {
                Map<String, String> env = Map.of("BLKSNAP_CONTROL", data.resolve("control.sock").toString());
                PrintStream sink = new PrintStream(OutputStream.nullOutputStream(), true, StandardCharsets.UTF_8);
                String repo = dir.resolve("repo").toString();
                List<List<String>> calls = new ArrayList<>();
                calls.add(List.of("backup", "--repo", repo, "--device", "disk0", "--storage-size", "8M", "--storage-limit", "16M"));
                calls.add(List.of("tracker", "mark-dirty", "--device", "disk0", "--range", "0:256", "--range", "8192:128"));
                calls.add(List.of("--json", "backup", "--repo", repo, "--device", "disk0", "--storage-size", "8M",
                        "--storage-limit", "8M"));
                calls.add(List.of("tracker", "mark-dirty", "--device", "disk0", "--range", "4096:128"));
                // the tool backing up itself (S3, a user the agent refuses); the calls above went to the agent
                calls.add(List.of("backup", "--agent", "off", "--repo", repo, "--device", "disk0", "--storage-size", "8M",
                        "--storage-limit", "8M"));
                calls.add(List.of("points", "--repo", repo));
                calls.add(List.of("--json", "points", "--repo", repo));
                calls.add(List.of("verify", "--repo", repo));
                for (List<String> call : calls) {
                    if (Main.run(call.toArray(String[]::new), sink, sink, env) != 0) {
                        failures++;
                    }
                }
                java.io.ByteArrayOutputStream listed = new java.io.ByteArrayOutputStream();
                PrintStream out = new PrintStream(listed, true, StandardCharsets.UTF_8);
                failures += Main.run(new String[] {"points", "--repo", repo}, out, sink, env) == 0 ? 0 : 1;
                String[] lines = listed.toString(StandardCharsets.UTF_8).strip().split("\n");
                String latest = lines[lines.length - 1].split(" ")[0];
                if (Main.run(new String[] {"restore", "--repo", repo, "--point", latest, "--to",
                        dir.resolve("restored.img").toString()}, sink, sink, env) != 0) {
                    failures++;
                }
            }
            return failures;
        } finally {
            FileTrees.deleteRecursively(dir);
        }
    }

    /** For trying it by hand: exits with the number of failed calls. */
    public static void main(String[] args) throws IOException {
        System.exit(run());
    }
}
