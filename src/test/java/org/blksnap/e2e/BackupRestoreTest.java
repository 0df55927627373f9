package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.blksnap.cli.CliRun;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * {@code blksnap backup/points/restore/verify} through the real daemon and tool: a full point, then
 * incremental ones that read exactly the blocks written since (raw NBD writes at known offsets);
 * every point restored, to a file and to a device of the daemon over NBD, equals an nbdcopy of the
 * device taken at its backup; a backup killed with SIGKILL in the middle leaves no point and the
 * next backup and verify succeed; a damaged chunk is found by verify, which names the points.
 */
@Tag("system")
class BackupRestoreTest {
    static final int BLOCK = 64 << 10;
    static final Duration T = Duration.ofSeconds(120);
    @TempDir
    Path dir;
    final JsonMapper json = JsonMapper.builder().build();

    private Path initialImage() throws Exception {
        return initialImage(dir);
    }

    /** 64 MiB in {@code dir}/initial.img: a random half, a text quarter, a zero quarter. */
    static Path initialImage(Path dir) throws Exception {
        byte[] data = new byte[64 << 20];
        new Random(42).nextBytes(data);
        byte[] line = "backup me: the quick brown fox jumps over the lazy dog\n".getBytes(StandardCharsets.US_ASCII);
        for (int i = 32 << 20; i < 48 << 20; i++) {
            data[i] = line[i % line.length];
        }
        java.util.Arrays.fill(data, 48 << 20, 64 << 20, (byte) 0);
        Path f = dir.resolve("initial.img");
        Files.write(f, data);
        return f;
    }

    static void nbdcopy(String from, String to) {
        ExternalTool.run(T, "nbdcopy", from, to).assertSuccess();
    }

    private Path record(DaemonHarness d, String name) {
        return record(d, dir, name);
    }

    /** An nbdcopy of disk0 to {@code dir/name}: what a point taken now must restore to. */
    static Path record(DaemonHarness d, Path dir, String name) {
        Path f = dir.resolve(name);
        nbdcopy(d.uri("disk0"), f.toString());
        return f;
    }

    private String[] backup(DaemonHarness d, Path repo, String... extra) {
        List<String> args = new ArrayList<>(List.of("backup", "--repo", repo.toString(), "--device", "disk0",
                "--storage-size", "16M", "--storage-limit", "64M", "--pack-size", "1M"));
        args.addAll(List.of(extra));
        CliRun r = d.cli(args.toArray(String[]::new));
        assertThat(r.exitCode()).as(r.toString()).isZero();
        String[] f = r.line().split(" ");
        assertThat(f).as(r.toString()).hasSize(5);
        assertThat(f[0]).isEqualTo("disk0");
        return f;
    }

    static void assertSameBytes(Path actual, Path expected) throws Exception {
        assertThat(Files.mismatch(actual, expected)).as("%s vs %s", actual, expected).isEqualTo(-1L);
    }

    @Test
    void incrementalPointsReadOnlyWhatChangedAndEveryPointRestoresBitForBit() throws Exception {
        ExternalTool.require("nbdcopy", "qemu-io");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M", "disk1=64M"), List.of())) {
            String disk0 = d.uri("disk0");
            nbdcopy(initialImage().toString(), disk0);
            Path rec1 = record(d, "rec1.img");
            String[] p1 = backup(d, repo);
            assertThat(p1[2]).isEqualTo("full");
            assertThat(Long.parseLong(p1[3])).isEqualTo(64L << 20);
            assertThat(Long.parseLong(p1[4])).as("the random half is stored; text compresses; zeros are holes")
                    .isBetween(32L << 20, 40L << 20);

            // 4 blocks: 1 at 1 MiB, 2 at 10 MiB (random area), 1 at 50 MiB (in the zero quarter)
            Nbd.qemuIoOk(disk0, "write -P 0x5a 1M 64k", "write -P 0x5b 10M 128k", "write -P 0x5c 50M 64k");
            Path rec2 = record(d, "rec2.img");
            String[] p2 = backup(d, repo);
            assertThat(p2[2]).isEqualTo("incremental");
            assertThat(Long.parseLong(p2[3])).as("bytes read = the 4 blocks written").isEqualTo(4L * BLOCK);
            assertThat(Long.parseLong(p2[4])).as("3 distinct patterns, compressed, and a few index nodes")
                    .isLessThan(4L * BLOCK);

            // an unaligned write inside one block, and one straddling two
            Nbd.qemuIoOk(disk0, "write -P 0x11 20000k 4k", "write -P 0x12 30716k 8k");
            Path rec3 = record(d, "rec3.img");
            CliRun r3 = d.cli("--json", "backup", "--repo", repo.toString(), "--device", "disk0", "--storage-size", "16M",
                    "--storage-limit", "64M");
            assertThat(r3.exitCode()).as(r3.toString()).isZero();
            JsonNode p3 = json.readTree(r3.out()).path("points").get(0);
            assertThat(p3.path("kind").asString()).isEqualTo("incremental");
            assertThat(p3.path("bytesRead").asLong()).isEqualTo(3L * BLOCK);
            assertThat(p3.path("snapNumber").asInt()).isEqualTo(3);
            assertThat(p3.path("reason").asString()).contains(p2[1]);
            JsonNode timings = json.readTree(r3.out()).path("timings");
            for (String phase : List.of("jvmStartSeconds", "openRepositorySeconds", "createSeconds", "storageSeconds",
                    "takeSeconds", "collectSeconds", "pointsSeconds", "destroySeconds")) {
                assertThat(timings.path(phase).asDouble(-1)).as(phase).isGreaterThan(0);
            }
            assertThat(timings.path("pointsSeconds").asDouble()).as("the points' phase holds the point's own time")
                    .isGreaterThanOrEqualTo(p3.path("seconds").asDouble());
            JsonNode phases = p3.path("phases");
            double sequential = 0;
            for (String phase : List.of("mapSeconds", "readAndStoreSeconds", "indexSeconds", "sealSeconds", "commitSeconds")) {
                assertThat(phases.path(phase).asDouble(-1)).as(phase).isGreaterThan(0);
                sequential += phases.path(phase).asDouble();
            }
            for (String phase : List.of("nbdSeconds", "hashSeconds", "storeSeconds")) {
                assertThat(phases.path(phase).asDouble(-1)).as(phase + " (3 blocks were read, hashed and stored)").isGreaterThan(0);
            }
            assertThat(sequential - phases.path("commitSeconds").asDouble())
                    .as("the point's phases up to its manifest (which records the time), one after the other, fit in its time")
                    .isLessThanOrEqualTo(p3.path("seconds").asDouble() + 0.001);
            assertThat(sequential).as("all the point's phases fit in the points' timing")
                    .isLessThanOrEqualTo(timings.path("pointsSeconds").asDouble() + 0.001);

            JsonNode points = json.readTree(d.ok("--json", "points", "--repo", repo.toString())).path("points");
            assertThat(points).hasSize(3);
            assertThat(points.get(0).path("id").asString()).isEqualTo(p1[1]);
            assertThat(points.get(0).path("kind").asString()).isEqualTo("full");
            assertThat(points.get(2).path("id").asString()).isEqualTo(p3.path("id").asString());

            String[] ids = {p1[1], p2[1], p3.path("id").asString()};
            Path[] recs = {rec1, rec2, rec3};
            for (int i = 0; i < 3; i++) {
                Path out = dir.resolve("restored" + i + ".img");
                d.ok("restore", "--repo", repo.toString(), "--point", ids[i], "--to", out.toString());
                assertSameBytes(out, recs[i]);
            }
            // restore the first point onto another device of the daemon, over NBD
            d.ok("restore", "--repo", repo.toString(), "--point", ids[0], "--to", d.uri("disk1"));
            Path back = dir.resolve("disk1-copy.img");
            nbdcopy(d.uri("disk1"), back.toString());
            assertSameBytes(back, rec1);

            assertThat(d.ok("verify", "--repo", repo.toString())).startsWith("ok: 3 point(s)");

            // damage a chunk only the first point uses: the one that block 16 (1 MiB) had before the write
            byte[] original = java.util.Arrays.copyOfRange(Files.readAllBytes(rec1), 1 << 20, (1 << 20) + BLOCK);
            Path pack = flipAByteOfTheChunk(repo, original);
            CliRun v = d.cli("verify", "--repo", repo.toString());
            assertThat(v.exitCode()).as(v.toString()).isEqualTo(65);
            assertThat(v.out()).contains("DAMAGED chunk").contains(pack.getFileName().toString().substring(0, 32))
                    .contains("used by point(s) " + ids[0]).doesNotContain(ids[1]).contains("FAILED: 3 point(s)");
            CliRun bad = d.cli("restore", "--repo", repo.toString(), "--point", ids[0], "--to", dir.resolve("x.img").toString());
            assertThat(bad.exitCode()).as(bad.toString()).isEqualTo(65);
            assertThat(bad.err()).contains("DAMAGED");
            assertThat(dir.resolve("x.img")).doesNotExist();
            d.ok("restore", "--repo", repo.toString(), "--point", ids[1], "--to", dir.resolve("y.img").toString());
            assertSameBytes(dir.resolve("y.img"), rec2);
        }
    }

    /** Finds the blob of {@code chunk} in the packs (stored raw: it is random) and flips a byte of it. */
    private static Path flipAByteOfTheChunk(Path repo, byte[] chunk) throws Exception {
        byte[] probe = java.util.Arrays.copyOfRange(chunk, 0, 64);
        try (var packs = Files.list(repo.resolve("packs"))) {
            for (Path p : packs.toList()) {
                byte[] all = Files.readAllBytes(p);
                for (int i = 0; i + probe.length <= all.length; i++) {
                    if (all[i] == probe[0] && java.util.Arrays.equals(all, i, i + probe.length, probe, 0, probe.length)) {
                        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
                            ch.write(ByteBuffer.wrap(new byte[] {(byte) (all[i + 100] ^ 1)}), i + 100);
                        }
                        return p;
                    }
                }
            }
        }
        throw new AssertionError("chunk not found in any pack");
    }

    /** The point restores to the recorded bytes, and no backup's storage directory is left in the data directory. */
    private void restoresAsRecordedWithNoStorageLeft(DaemonHarness d, Path repo, String point, Path rec) throws Exception {
        Path out = dir.resolve("restored.img");
        d.ok("restore", "--repo", repo.toString(), "--point", point, "--to", out.toString());
        assertSameBytes(out, rec);
        try (var left = Files.list(dir)) {
            assertThat(left.map(x -> x.getFileName().toString())).noneMatch(n -> n.startsWith("backup-"));
        }
    }

    /** Starts {@code blksnap backup} as a process that pauses after {@code pauseAfter} bytes read; returns once it paused. */
    private Process pausedBackup(DaemonHarness d, Path repo, String pauseAfter, Path log, String... devices) throws Exception {
        return pausedBackup(d, repo, pauseAfter, log, List.of(), devices);
    }

    /** {@code blksnap backup} in a JVM of its own that pauses after {@code pauseAfter} bytes read (no device yet). */
    private static List<String> pausingBackupCommand(DaemonHarness d, Path repo, String pauseAfter) {
        return new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "org.blksnap.cli.Main", "--control", d.control().toString(), "backup", "--repo", repo.toString(),
                "--storage-size", "16M", "--storage-limit", "16M", "--pack-size", "256K",
                "--debug-pause-after", pauseAfter));
    }

    private Process pausedBackup(DaemonHarness d, Path repo, String pauseAfter, Path log, List<String> options,
                                 String... devices) throws Exception {
        List<String> cmd = pausingBackupCommand(d, repo, pauseAfter);
        if (!options.contains("--agent")) {
            cmd.addAll(List.of("--agent", "off")); // resumed by a line on this process's stdin
        }
        cmd.addAll(options);
        for (String dev : devices.length == 0 ? new String[] {"disk0"} : devices) {
            cmd.add("--device");
            cmd.add(dev);
        }
        Process p = new ProcessBuilder(cmd).redirectOutput(log.toFile()).redirectError(log.resolveSibling(log.getFileName() + ".err").toFile()).start();
        try {
            await().atMost(Duration.ofSeconds(60)).until(() -> {
                if (!p.isAlive()) {
                    throw new AssertionError("the backup exited before pausing:\n" + Files.readString(log)
                            + Files.readString(log.resolveSibling(log.getFileName() + ".err")));
                }
                return Files.readString(log.resolveSibling(log.getFileName() + ".err")).contains("paused after");
            });
        } catch (Throwable t) {
            p.destroyForcibly();
            throw t;
        }
        return p;
    }

    @Test
    void aDaemonRestartBetweenBackupsStaysIncremental() throws Exception {
        ExternalTool.require("nbdcopy", "qemu-io");
        Path repo = dir.resolve("repo");
        String[] first;
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            nbdcopy(initialImage().toString(), d.uri("disk0"));
            first = backup(d, repo);
            assertThat(first[2]).isEqualTo("full");
            Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x5a 1M 64k"); // before the restart
        }
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x5b 10M 64k"); // after it
            Path rec = record(d, "rec.img");
            CliRun r = d.cli("--json", "backup", "--repo", repo.toString(), "--device", "disk0", "--storage-size", "16M",
                    "--storage-limit", "64M");
            assertThat(r.exitCode()).as(r.toString()).isZero();
            JsonNode p = json.readTree(r.out()).path("points").get(0);
            assertThat(p.path("kind").asString()).as(r.toString()).isEqualTo("incremental");
            assertThat(p.path("bytesRead").asLong()).as("the block written before and the one after the restart")
                    .isEqualTo(2L * BLOCK);
            Path out = dir.resolve("out.img");
            d.ok("restore", "--repo", repo.toString(), "--point", p.path("id").asString(), "--to", out.toString());
            assertSameBytes(out, rec);
        }
    }

    @Test
    void aTrackerResetGivesAFullPointAndSaysWhy() throws Exception {
        ExternalTool.require("nbdcopy", "qemu-io");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            nbdcopy(initialImage().toString(), d.uri("disk0"));
            String[] first = backup(d, repo);
            d.ok("tracker", "remove", "--device", "disk0");
            Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x5a 1M 64k");
            Path rec = record(d, "rec.img");
            CliRun r = d.cli("--json", "backup", "--repo", repo.toString(), "--device", "disk0", "--storage-size", "16M",
                    "--storage-limit", "16M");
            assertThat(r.exitCode()).as(r.toString()).isZero();
            JsonNode p = json.readTree(r.out()).path("points").get(0);
            assertThat(p.path("kind").asString()).isEqualTo("full");
            assertThat(p.path("reason").asString()).startsWith("new CBT generation " + p.path("generation").asString())
                    .contains(first[1]).contains("tracker was reset");
            assertThat(p.path("bytesRead").asLong()).isEqualTo(64L << 20);
            assertThat(p.path("newBytes").asLong()).as("all but one chunk are in the repository already")
                    .isLessThan(1L << 20);
            Path out = dir.resolve("out.img");
            d.ok("restore", "--repo", repo.toString(), "--point", p.path("id").asString(), "--to", out.toString());
            assertSameBytes(out, rec);
        }
    }

    @Test
    void twoDevicesBackedUpInOneSnapshotRestoreToTheSameInstant() throws Exception {
        ExternalTool.require("nbdcopy", "qemu-io");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M", "disk1=64M"), List.of())) {
            Path initial = initialImage();
            nbdcopy(initial.toString(), d.uri("disk0"));
            Nbd.qemuIoOk(d.uri("disk1"), "write -P 0x21 0 8M");
            Path rec0 = record(d, "rec0.img");
            Path rec1 = dir.resolve("rec1.img");
            nbdcopy(d.uri("disk1"), rec1.toString());
            // the backup pauses while reading disk0, after the take; then disk1 and disk0 are written, in that order
            Path log = dir.resolve("two.log");
            Process p = pausedBackup(d, repo, "4M", log, "disk0", "disk1");
            try {
                Nbd.qemuIoOk(d.uri("disk1"), "write -P 0x77 0 1M");
                Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x78 0 1M");
                p.getOutputStream().write('\n');
                p.getOutputStream().close();
                assertThat(p.waitFor()).as(Files.readString(dir.resolve("two.log.err"))).isZero();
            } finally {
                p.destroyForcibly();
            }
            List<String> lines = Files.readAllLines(log);
            assertThat(lines).hasSize(2);
            assertThat(lines.get(0)).startsWith("disk0 ").contains(" full ");
            assertThat(lines.get(1)).startsWith("disk1 ").contains(" full ");
            Path out0 = dir.resolve("out0.img");
            Path out1 = dir.resolve("out1.img");
            d.ok("restore", "--repo", repo.toString(), "--point", lines.get(0).split(" ")[1], "--to", out0.toString());
            d.ok("restore", "--repo", repo.toString(), "--point", lines.get(1).split(" ")[1], "--to", out1.toString());
            assertSameBytes(out0, rec0);
            assertSameBytes(out1, rec1);
        }
    }

    @Test
    void aBackupStoppedBySigtermDestroysItsSnapshotAndRemovesItsStorage() throws Exception {
        ExternalTool.require("nbdcopy");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            nbdcopy(initialImage().toString(), d.uri("disk0"));
            Process p = pausedBackup(d, repo, "8M", dir.resolve("term.log"));
            assertThat(d.ok("snapshot", "collect")).isNotEmpty();
            p.destroy(); // SIGTERM: the shutdown hook destroys the snapshot
            assertThat(p.waitFor()).isEqualTo(143);
            assertThat(Files.readString(dir.resolve("term.log.err"))).contains("backup: stopped by a signal: snapshot ")
                    .contains("destroyed, the point being written was not");
            assertThat(d.ok("snapshot", "collect")).isEmpty();
            try (var left = Files.list(dir)) {
                assertThat(left.map(x -> x.getFileName().toString())).noneMatch(n -> n.startsWith("backup-"));
            }
            assertThat(repo.resolve("points")).isEmptyDirectory();
            try (var sessions = Files.list(repo.resolve("sessions"))) {
                for (Path marker : sessions.toList()) {
                    assertThat(Files.readString(marker)).as("nothing left for the next backup to clean up")
                            .doesNotContain("snapshot");
                }
            }
        }
    }

    @Test
    void theSnapshotOfAKilledBackupIsDestroyedByTheDaemonWhenItsLeaseRunsOut() throws Exception {
        ExternalTool.require("nbdcopy");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            nbdcopy(initialImage().toString(), d.uri("disk0"));
            Path rec = record(d, "rec.img");
            // renewed every second: only a stall of 4 s (a loaded machine) could lose it
            Process p = pausedBackup(d, repo, "8M", dir.resolve("leased.log"), List.of("--snapshot-lease", "4"));
            // paused for longer than a lease: its renewals keep the snapshot
            Thread.sleep(6_000);
            assertThat(d.ok("snapshot", "collect")).as("renewed while the backup lives").isNotEmpty();
            p.destroyForcibly(); // SIGKILL: no renewals any more
            p.waitFor();
            await().atMost(Duration.ofSeconds(20)).until(() -> d.ok("snapshot", "collect").isEmpty());
            // the next backup finds the dead session's marker: its snapshot is already gone, its storage is removed
            CliRun next = d.cli("backup", "--repo", repo.toString(), "--device", "disk0", "--storage-size", "16M",
                    "--storage-limit", "16M");
            assertThat(next.exitCode()).as(next.toString()).isZero();
            assertThat(next.err()).contains("did not finish").doesNotContain("cannot destroy");
            String[] f = next.line().split(" ");
            restoresAsRecordedWithNoStorageLeft(d, repo, f[1], rec);
        }
    }

    /**
     * A backup the tool relaunched for the optimizing compiler (cli/Relaunch) follows the process
     * that started it: that one killed outright (SIGKILL), the relaunched backup stops as on SIGTERM
     * (its snapshot destroyed at once, not when the lease runs out; no point) instead of going on
     * as an orphan. Here a shell stands in for the first process.
     */
    @Test
    void aRelaunchedBackupStopsWhenTheToolThatStartedItIsKilled() throws Exception {
        ExternalTool.require("nbdcopy");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            nbdcopy(initialImage().toString(), d.uri("disk0"));
            Path log = dir.resolve("relaunched.log");
            Path err = dir.resolve("relaunched.err");
            List<String> cmd = pausingBackupCommand(d, repo, "8M");
            cmd.addAll(List.of("--device", "disk0"));
            StringBuilder quoted = new StringBuilder();
            for (String a : cmd) {
                quoted.append(" '").append(a.replace("'", "'\\''")).append('\'');
            }
            // The backup's stdin is a FIFO this test holds open, so that it outlives the shell: a paused
            // backup resumes at the end of its stdin, and a shell's own stdin (a pipe from this JVM) is
            // closed by destroyForcibly below, which once let the backup resume and finish before it
            // noticed its parent was gone (CI, 2026-12-04). The shell prints the backup's pid and waits;
            // the backup's lease (60 s) outlives this test's patience.
            Path fifo = dir.resolve("relaunched.stdin");
            assertThat(new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor()).isZero();
            // read and write: the open does not wait for a reader (Linux), and this end stays open
            try (var _ = java.nio.channels.FileChannel.open(fifo,
                    java.nio.file.StandardOpenOption.READ, java.nio.file.StandardOpenOption.WRITE)) {
                Process parent = new ProcessBuilder("bash", "-c", "BLKSNAP_IN_PROCESS_BACKUP=$$" + quoted
                        + " <'" + fifo + "' >'" + log + "' 2>'" + err + "' & echo $!; wait").start();
                long pid;
                try {
                    pid = Long.parseLong(parent.inputReader().readLine().trim());
                    await().atMost(Duration.ofSeconds(60)).until(() -> Files.exists(err)
                            && Files.readString(err).contains("paused after"));
                    assertThat(d.ok("snapshot", "collect")).as("the paused backup holds its snapshot").isNotEmpty();
                } finally {
                    parent.destroyForcibly(); // SIGKILL: the first process gives the backup no word
                }
                parent.waitFor();
                try {
                    ProcessHandle backup = ProcessHandle.of(pid).orElse(null);
                    if (backup != null) {
                        assertThat(backup.onExit().get(30, java.util.concurrent.TimeUnit.SECONDS).isAlive()).isFalse();
                    }
                    assertThat(Files.readString(err)).contains("the tool that started this backup (pid ").contains(") ended; stopping");
                    assertThat(d.ok("snapshot", "collect")).as("destroyed by the backup itself, long before its lease ran out")
                            .isEmpty();
                    assertThat(repo.resolve("points")).isEmptyDirectory();
                } finally {
                    ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly); // an orphan when this failed
                }
            }
        }
    }

    @Test
    void aBackupKilledMidwayLeavesNoPointAndTheNextBackupAndVerifySucceed() throws Exception {
        ExternalTool.require("nbdcopy");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            nbdcopy(initialImage().toString(), d.uri("disk0"));
            Path rec = record(d, "rec.img");
            Process p = pausedBackup(d, repo, "24M", dir.resolve("killed.log"));
            p.destroyForcibly(); // SIGKILL: no shutdown hook, no cleanup
            p.waitFor();
            try (var packs = Files.list(repo.resolve("packs"))) {
                assertThat(packs.count()).as("sealed packs of the killed backup").isGreaterThan(10);
            }
            assertThat(repo.resolve("points")).isEmptyDirectory();
            assertThat(d.ok("snapshot", "collect")).as("the killed backup's snapshot is still held").isNotEmpty();
            assertThat(d.cli("points", "--repo", repo.toString(), "--device", "disk0").exitCode()).isEqualTo(66);

            CliRun next = d.cli("backup", "--repo", repo.toString(), "--device", "disk0", "--storage-size", "16M",
                    "--storage-limit", "16M");
            assertThat(next.exitCode()).as(next.toString()).isZero();
            assertThat(next.err()).contains("did not finish; destroying its snapshot");
            String[] f = next.line().split(" ");
            assertThat(f[2]).isEqualTo("full");
            assertThat(d.ok("snapshot", "collect")).isEmpty();
            assertThat(repo.resolve("tmp")).isEmptyDirectory();
            assertThat(repo.resolve("sessions")).as("the dead writer's markers are gone").isEmptyDirectory();
            // the killed backup's sealed packs are in no index object and used by no point: gc removes them
            String gc = d.ok("gc", "--repo", repo.toString(), "--grace", "PT0S");
            assertThat(Integer.parseInt(gc.split(" ")[1])).as(gc).isGreaterThan(10);
            assertThat(d.ok("verify", "--repo", repo.toString())).startsWith("ok: 1 point(s)");
            restoresAsRecordedWithNoStorageLeft(d, repo, f[1], rec);
        }
    }
}
