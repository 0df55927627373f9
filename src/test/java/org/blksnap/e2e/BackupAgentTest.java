package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;
import static org.blksnap.e2e.BackupRestoreTest.BLOCK;
import static org.blksnap.e2e.BackupRestoreTest.assertSameBytes;
import static org.blksnap.e2e.BackupRestoreTest.nbdcopy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.blksnap.cli.CliRun;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * {@code backup} in the daemon's resident agent, through the real daemon and tool: points made there
 * restore bit for bit and stay incremental; a tool killed outright or stopped with SIGTERM while its
 * job runs leaves no snapshot, no storage and no point, and the next backup and verify succeed; so
 * does the daemon killed under a job, once restarted.
 */
@Tag("system")
class BackupAgentTest {
    @TempDir
    Path dir;
    final JsonMapper json = JsonMapper.builder().build();

    private JsonNode agentBackup(DaemonHarness d, Path repo) {
        CliRun r = d.cli("--json", "backup", "--agent", "daemon", "--repo", repo.toString(), "--device", "disk0",
                "--storage-size", "16M", "--storage-limit", "64M", "--pack-size", "1M");
        assertThat(r.exitCode()).as(r.toString()).isZero();
        JsonNode report = json.readTree(r.out());
        assertThat(report.path("agentJob").asString()).as("ran in the agent: %s", r).isNotEmpty();
        assertThat(report.path("timings").path("jvmStartSeconds").asDouble(-1)).isGreaterThanOrEqualTo(0);
        return report.path("points").get(0);
    }

    @Test
    void pointsMadeInTheAgentStayIncrementalAndRestoreBitForBit() throws Exception {
        ExternalTool.require("nbdcopy", "qemu-io");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            nbdcopy(BackupRestoreTest.initialImage(dir).toString(), d.uri("disk0"));
            Path rec1 = BackupRestoreTest.record(d, dir, "rec1.img");
            JsonNode p1 = agentBackup(d, repo);
            assertThat(p1.path("kind").asString()).isEqualTo("full");

            Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x5a 1M 64k", "write -P 0x5b 40M 128k");
            Path rec2 = BackupRestoreTest.record(d, dir, "rec2.img");
            JsonNode p2 = agentBackup(d, repo);
            assertThat(p2.path("kind").asString()).isEqualTo("incremental");
            assertThat(p2.path("bytesRead").asLong()).isEqualTo(3L * BLOCK);

            // the same repository backed up by the tool itself continues the chain
            CliRun r3 = d.cli("--json", "backup", "--agent", "off", "--repo", repo.toString(), "--device", "disk0",
                    "--storage-size", "16M", "--storage-limit", "64M");
            assertThat(r3.exitCode()).as(r3.toString()).isZero();
            assertThat(json.readTree(r3.out()).has("agentJob")).isFalse();
            assertThat(json.readTree(r3.out()).path("points").get(0).path("kind").asString()).isEqualTo("incremental");

            for (var pr : List.of(List.of(p1.path("id").asString(), rec1), List.of(p2.path("id").asString(), rec2))) {
                Path out = dir.resolve("out-" + pr.get(0) + ".img");
                d.ok("restore", "--repo", repo.toString(), "--point", pr.get(0).toString(), "--to", out.toString());
                assertSameBytes(out, (Path) pr.get(1));
            }
            assertThat(d.ok("verify", "--repo", repo.toString())).startsWith("ok: 3 point(s)");
            noSnapshotNoStorage(d);
        }
    }

    /** Two tools at once, each backing up its own device into one repository: two jobs in one JVM. */
    @Test
    void twoAgentJobsAtOnceIntoOneRepositoryBothRestoreExactly() throws Exception {
        ExternalTool.require("nbdcopy", "qemu-io");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M", "disk1=64M"), List.of())) {
            nbdcopy(BackupRestoreTest.initialImage(dir).toString(), d.uri("disk0"));
            Nbd.qemuIoOk(d.uri("disk1"), "write -P 0x33 0 20M", "write -P 0x44 30M 10M");
            Path rec0 = BackupRestoreTest.record(d, dir, "rec0.img");
            Path rec1 = dir.resolve("rec1.img");
            nbdcopy(d.uri("disk1"), rec1.toString());
            for (int round = 0; round < 2; round++) {
                if (round == 1) {
                    Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x5a 5M 64k");
                    Nbd.qemuIoOk(d.uri("disk1"), "write -P 0x5b 50M 64k");
                    rec0 = BackupRestoreTest.record(d, dir, "rec0b.img");
                    rec1 = dir.resolve("rec1b.img");
                    nbdcopy(d.uri("disk1"), rec1.toString());
                }
                var pool = java.util.concurrent.Executors.newFixedThreadPool(2);
                try {
                    var f0 = pool.submit(() -> d.cli("--json", "backup", "--agent", "daemon", "--repo", repo.toString(),
                            "--device", "disk0", "--storage-size", "16M", "--storage-limit", "16M"));
                    var f1 = pool.submit(() -> d.cli("--json", "backup", "--agent", "daemon", "--repo", repo.toString(),
                            "--device", "disk1", "--storage-size", "16M", "--storage-limit", "16M"));
                    int n = 0;
                    for (var pair : List.of(List.of(f0.get(), rec0), List.of(f1.get(), rec1))) {
                        CliRun r = (CliRun) pair.get(0);
                        assertThat(r.exitCode()).as(r.toString()).isZero();
                        JsonNode report = json.readTree(r.out());
                        assertThat(report.path("agentJob").asString()).isNotEmpty();
                        JsonNode p = report.path("points").get(0);
                        assertThat(p.path("kind").asString()).isEqualTo(round == 0 ? "full" : "incremental");
                        Path out = dir.resolve("out-" + round + "-" + n++ + ".img");
                        d.ok("restore", "--repo", repo.toString(), "--point", p.path("id").asString(), "--to",
                                out.toString());
                        assertSameBytes(out, (Path) pair.get(1));
                    }
                } finally {
                    pool.shutdownNow();
                }
            }
            assertThat(d.ok("verify", "--repo", repo.toString())).startsWith("ok: 4 point(s)");
            noSnapshotNoStorage(d);
        }
    }

    @Test
    void aToolKilledWhileItsJobRunsLeavesNoPointAndTheNextBackupAndVerifySucceed() throws Exception {
        ExternalTool.require("nbdcopy");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            nbdcopy(BackupRestoreTest.initialImage(dir).toString(), d.uri("disk0"));
            Path rec = BackupRestoreTest.record(d, dir, "rec.img");
            Process p = pausedAgentBackup(d, repo, dir.resolve("killed.log"));
            assertThat(d.ok("snapshot", "collect")).as("the job's snapshot").isNotEmpty();
            p.destroyForcibly(); // SIGKILL: the tool cannot cancel; the job's lease (4 s) runs out
            p.waitFor();
            await().atMost(Duration.ofSeconds(30)).until(() -> d.ok("snapshot", "collect").isEmpty());
            await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> noSnapshotNoStorage(d));
            assertThat(repo.resolve("points")).isEmptyDirectory();

            JsonNode next = agentBackup(d, repo);
            assertThat(next.path("kind").asString()).isEqualTo("full");
            assertThat(d.ok("verify", "--repo", repo.toString())).startsWith("ok: 1 point(s)");
            Path out = dir.resolve("out.img");
            d.ok("restore", "--repo", repo.toString(), "--point", next.path("id").asString(), "--to", out.toString());
            assertSameBytes(out, rec);
        }
    }

    @Test
    void sigtermCancelsTheJobAndTheToolExitsWithItsStatus() throws Exception {
        ExternalTool.require("nbdcopy");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            nbdcopy(BackupRestoreTest.initialImage(dir).toString(), d.uri("disk0"));
            Path log = dir.resolve("term.log");
            Process p = pausedAgentBackup(d, repo, log);
            JsonNode jobs = json.readTree(d.ok("--json", "status")).path("agentJobs");
            assertThat(jobs.size()).as("status lists the running job").isEqualTo(1);
            assertThat(jobs.get(0).has("exitStatus")).isFalse();
            assertThat(jobs.get(0).path("args").toString()).contains("--debug-pause-after").doesNotContain("--control");
            assertThat(d.ok("status")).contains("backup agent jobs:").contains(" running ").contains("  lease 4s, ");
            JsonNode snapshot = json.readTree(d.ok("--json", "status")).path("snapshots").get(0);
            assertThat(snapshot.path("leaseSeconds").asLong()).as("the job's snapshot, leased").isEqualTo(4);
            assertThat(snapshot.path("leaseLeftMillis").asLong()).isBetween(0L, 4000L);
            p.destroy(); // SIGTERM: the tool's hook cancels the job and relays its end
            assertThat(p.waitFor()).isEqualTo(143);
            String err = Files.readString(log.resolveSibling("term.log.err"));
            assertThat(err).contains("cancelled: cancelled by its caller");
            assertThat(d.ok("snapshot", "collect")).isEmpty();
            noSnapshotNoStorage(d);
            assertThat(repo.resolve("points")).isEmptyDirectory();
            assertThat(json.readTree(d.ok("--json", "status")).has("agentJobs")).as("collected: none left").isFalse();
        }
    }

    /**
     * The daemon killed (SIGKILL) while its agent runs a backup: the tool reports the lost daemon;
     * after a restart the next backup finds the dead job's session, removes its storage, and makes a
     * point that restores exactly.
     */
    @Test
    void aDaemonKilledDuringAnAgentBackupLeavesNothingTheNextBackupCannotCleanUp() throws Exception {
        ExternalTool.require("nbdcopy");
        Path data = dir.resolve("data");
        Path repo = dir.resolve("repo");
        Process daemon = startDaemon(data, 1);
        try {
            String uri = "nbd+unix:///d0?socket=" + data.resolve("nbd.sock");
            nbdcopy(BackupRestoreTest.initialImage(dir).toString(), uri);
            Path rec = dir.resolve("rec.img");
            nbdcopy(uri, rec.toString());
            Process tool = pausedAgentBackup(data.resolve("control.sock"), repo, "d0", dir.resolve("tool.log"));
            try (var left = Files.list(data)) {
                assertThat(left.map(x -> x.getFileName().toString())).anyMatch(n -> n.startsWith("backup-"));
            }
            daemon.destroyForcibly(); // SIGKILL: the job, its snapshot and the agent die with it
            daemon.waitFor();
            assertThat(tool.waitFor()).as("the tool loses its daemon").isNotZero();
            assertThat(repo.resolve("points")).isEmptyDirectory();

            daemon = startDaemon(data, 2);
            CliRun next = CliRun.run(data.resolve("control.sock"), "--json", "backup", "--agent", "daemon", "--repo",
                    repo.toString(), "--device", "d0", "--storage-size", "16M", "--storage-limit", "16M");
            assertThat(next.exitCode()).as(next.toString()).isZero();
            assertThat(next.err()).contains("did not finish");
            JsonNode p = json.readTree(next.out()).path("points").get(0);
            assertThat(p.path("kind").asString()).isEqualTo("full");
            try (var left = Files.list(data)) {
                assertThat(left.map(x -> x.getFileName().toString())).as("the dead job's storage is removed")
                        .noneMatch(n -> n.startsWith("backup-"));
            }
            assertThat(CliRun.run(data.resolve("control.sock"), "verify", "--repo", repo.toString()).line())
                    .startsWith("ok: 1 point(s)");
            Path out = dir.resolve("out.img");
            CliRun restore = CliRun.run(data.resolve("control.sock"), "restore", "--repo", repo.toString(), "--point",
                    p.path("id").asString(), "--to", out.toString());
            assertThat(restore.exitCode()).as(restore.toString()).isZero();
            assertSameBytes(out, rec);
        } finally {
            daemon.destroyForcibly();
            daemon.waitFor();
        }
    }

    /** blksnapd as a process of its own (so it can be killed) with one 64 MiB device d0. */
    private Process startDaemon(Path data, int n) throws Exception {
        Files.createDirectories(data);
        Path log = dir.resolve("blksnapd-" + n + ".log");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-Xmx512m", "-cp", System.getProperty("java.class.path"),
                "org.blksnap.daemon.Blksnapd", "--data-dir", data.toString(),
                "--device", "d0=" + data.resolve("d0.img") + ":64M", "--listen", "none",
                "--socket", data.resolve("nbd.sock").toString(), "--control", data.resolve("control.sock").toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        try {
            await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(50)).until(() -> {
                if (!p.isAlive()) {
                    throw new AssertionError("blksnapd exited " + p.exitValue() + ":\n" + Files.readString(log));
                }
                return Files.exists(data.resolve("control.sock"))
                        && CliRun.run(data.resolve("control.sock"), "version").exitCode() == 0;
            });
        } catch (Throwable t) {
            p.destroyForcibly();
            throw t;
        }
        return p;
    }

    private void noSnapshotNoStorage(DaemonHarness d) throws Exception {
        assertThat(d.ok("snapshot", "collect")).isEmpty();
        try (var left = Files.list(dir)) {
            assertThat(left.map(x -> x.getFileName().toString())).noneMatch(n -> n.startsWith("backup-"));
        }
    }

    /** {@code blksnap backup --agent daemon} as a process whose job pauses after 8 MiB read; returns once it paused. */
    private Process pausedAgentBackup(DaemonHarness d, Path repo, Path log) throws Exception {
        return pausedAgentBackup(d.control(), repo, "disk0", log);
    }

    private Process pausedAgentBackup(Path control, Path repo, String device, Path log) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "org.blksnap.cli.Main", "--control", control.toString(), "backup", "--agent", "daemon",
                "--repo", repo.toString(), "--device", device, "--storage-size", "16M", "--storage-limit", "16M",
                "--pack-size", "256K", "--snapshot-lease", "4", "--debug-pause-after", "8M"));
        Path err = log.resolveSibling(log.getFileName() + ".err");
        Process p = new ProcessBuilder(cmd).redirectOutput(log.toFile()).redirectError(err.toFile()).start();
        try {
            await().atMost(Duration.ofSeconds(60)).until(() -> {
                if (!p.isAlive()) {
                    throw new AssertionError("the backup exited before pausing:\n" + Files.readString(log)
                            + Files.readString(err));
                }
                return Files.readString(err).contains("paused after");
            });
        } catch (Throwable t) {
            p.destroyForcibly();
            throw t;
        }
        return p;
    }
}
