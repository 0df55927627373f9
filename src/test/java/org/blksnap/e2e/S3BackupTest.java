package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.blksnap.cli.CliRun;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.S3Server;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * {@code blksnap backup/points/restore/verify/prune/gc --repo s3://...} through the real daemon and
 * tool against a real S3 server (s3proxy, or {@code BLKSNAP_TEST_S3_ENDPOINT}: see S3Server), with
 * the same checks as the directory repository: every point restores bit for bit; an S3 server
 * stopped in the middle of a backup fails it with an error naming what failed, leaves no point,
 * and the next backup succeeds; an encrypted repository takes backups only with its key file and
 * restores every point bit for bit with it.
 */
@Tag("system")
class S3BackupTest {
    static final Duration T = Duration.ofSeconds(120);
    @TempDir
    Path dir;
    S3Server s3;
    final JsonMapper json = JsonMapper.builder().build();

    @BeforeEach
    void startS3() throws Exception {
        s3 = S3Server.start(dir);
    }

    @AfterEach
    void stopS3() throws Exception {
        if (s3 != null) {
            s3.close();
        }
    }

    private Path initialImage() throws Exception {
        return BackupRestoreTest.initialImage(dir);
    }

    private static void nbdcopy(String from, String to) {
        BackupRestoreTest.nbdcopy(from, to);
    }

    private Path record(DaemonHarness d, String name) {
        return BackupRestoreTest.record(d, dir, name);
    }

    private String[] repoArgs(String repo) {
        return new String[] {"--repo", repo, "--s3-endpoint", s3.endpoint().toString()};
    }

    private JsonNode backup(DaemonHarness d, String repo, String packSize) {
        List<String> args = new ArrayList<>(List.of("--json", "backup", "--device", "disk0", "--storage-size", "16M",
                "--storage-limit", "64M", "--pack-size", packSize));
        args.addAll(List.of(repoArgs(repo)));
        CliRun r = d.cli(args.toArray(String[]::new));
        assertThat(r.exitCode()).as(r.toString()).isZero();
        return json.readTree(r.out()).path("points").get(0);
    }

    private String ok(DaemonHarness d, String repo, String... args) {
        List<String> all = new ArrayList<>(List.of(args));
        all.addAll(List.of(repoArgs(repo)));
        return d.ok(all.toArray(String[]::new));
    }

    private static void assertSameBytes(Path actual, Path expected) throws Exception {
        BackupRestoreTest.assertSameBytes(actual, expected);
    }

    @Test
    @org.junit.jupiter.api.Timeout(value = 10, unit = java.util.concurrent.TimeUnit.MINUTES) // S3 round trips on a loaded CI machine
    void everyPointOfAnS3RepositoryRestoresBitForBitAndPruneGcAndVerifyWork() throws Exception {
        ExternalTool.require("nbdcopy", "qemu-io");
        String repo = s3.newRepo("r1");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M", "disk1=64M"), List.of())) {
            String disk0 = d.uri("disk0");
            nbdcopy(initialImage().toString(), disk0);
            Path rec1 = record(d, "rec1.img");
            // 20 MiB packs: the random half goes up in multipart uploads of 8 MiB parts
            JsonNode p1 = backup(d, repo, "20M");
            assertThat(p1.path("kind").asString()).isEqualTo("full");
            assertThat(p1.path("newBytes").asLong()).isBetween(32L << 20, 40L << 20);
            assertThat(s3.list(repo, "packs/")).as("packs larger than one part").anyMatch(o -> o.size() > (8 << 20));

            Nbd.qemuIoOk(disk0, "write -P 0x5a 1M 64k", "write -P 0x5b 10M 128k", "write -P 0x5c 50M 64k");
            Path rec2 = record(d, "rec2.img");
            JsonNode p2 = backup(d, repo, "1M");
            assertThat(p2.path("kind").asString()).isEqualTo("incremental");
            assertThat(p2.path("bytesRead").asLong()).isEqualTo(4L * 65536);

            Nbd.qemuIoOk(disk0, "write -P 0x11 20000k 4k");
            Path rec3 = record(d, "rec3.img");
            JsonNode p3 = backup(d, repo, "1M");
            assertThat(p3.path("kind").asString()).isEqualTo("incremental");

            JsonNode points = json.readTree(ok(d, repo, "--json", "points")).path("points");
            assertThat(points).hasSize(3);
            assertThat(points.get(0).path("host").asString()).as("the host each point came from").isNotEmpty();
            String[] ids = {p1.path("id").asString(), p2.path("id").asString(), p3.path("id").asString()};
            Path[] recs = {rec1, rec2, rec3};
            for (int i = 0; i < 3; i++) {
                Path out = dir.resolve("restored" + i + ".img");
                ok(d, repo, "restore", "--point", ids[i], "--to", out.toString());
                assertSameBytes(out, recs[i]);
            }
            ok(d, repo, "restore", "--point", ids[0], "--to", d.uri("disk1"));
            Path back = dir.resolve("disk1-copy.img");
            nbdcopy(d.uri("disk1"), back.toString());
            assertSameBytes(back, rec1);
            assertThat(ok(d, repo, "verify")).startsWith("ok: 3 point(s)");

            // the random half rewritten: the first point's packs hold only what later points replaced
            byte[] fresh = new byte[32 << 20];
            new Random(7).nextBytes(fresh);
            Path freshFile = dir.resolve("fresh.img");
            Files.write(freshFile, fresh);
            nbdcopy(freshFile.toString(), disk0);
            Path rec4 = record(d, "rec4.img");
            JsonNode p4 = backup(d, repo, "1M");
            String pruned = ok(d, repo, "prune", "--keep-last", "1");
            assertThat(pruned).contains("remove " + ids[0]).contains("keep   " + p4.path("id").asString());
            long packsBefore = s3.list(repo, "packs/").size();
            String gc = ok(d, repo, "gc", "--grace", "PT0S");
            int removed = Integer.parseInt(gc.split(" ")[1]);
            assertThat(removed).as(gc).isPositive();
            java.util.regex.Matcher written = java.util.regex.Pattern.compile("moved into (\\d+) new pack").matcher(gc);
            assertThat(written.find()).as(gc).isTrue();
            assertThat(s3.list(repo, "packs/")).as("packs removed, and the packs gc wrote with the live chunks of "
                    + "those it repacked: " + gc).hasSize((int) (packsBefore - removed + Integer.parseInt(written.group(1))));
            assertThat(ok(d, repo, "verify")).startsWith("ok: 1 point(s)");
            Path out = dir.resolve("restored4.img");
            ok(d, repo, "restore", "--point", p4.path("id").asString(), "--to", out.toString());
            assertSameBytes(out, rec4);
            assertThat(s3.list(repo, "sessions/")).as("writers leave no session behind").isEmpty();
        }
    }

    @Test
    @org.junit.jupiter.api.Timeout(value = 10, unit = java.util.concurrent.TimeUnit.MINUTES) // S3 round trips on a loaded CI machine
    void anS3ServerStoppedInTheMiddleOfABackupFailsItClearlyLeavesNoPointAndTheNextBackupSucceeds() throws Exception {
        ExternalTool.require("nbdcopy");
        org.junit.jupiter.api.Assumptions.assumeFalse(S3Server.external(), "needs a local server to stop");
        String repo = s3.newRepo("fault");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of())) {
            nbdcopy(initialImage().toString(), d.uri("disk0"));
            Path rec = record(d, "rec.img");
            Path log = dir.resolve("fault.log");
            Path err = dir.resolve("fault.log.err");
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "--enable-native-access=ALL-UNNAMED"));
            cmd.addAll(s3.jvmArgs());
            cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), "org.blksnap.cli.Main", "--control",
                    d.control().toString(), "backup", "--device", "disk0", "--storage-size", "16M", "--storage-limit", "16M",
                    "--pack-size", "1M", "--debug-pause-after", "16M"));
            cmd.addAll(List.of(repoArgs(repo)));
            Process p = new ProcessBuilder(cmd).redirectOutput(log.toFile()).redirectError(err.toFile()).start();
            try {
                await().atMost(Duration.ofSeconds(60)).until(() -> {
                    if (!p.isAlive()) {
                        throw new AssertionError("the backup exited before pausing:\n" + Files.readString(err));
                    }
                    return Files.readString(err).contains("paused after");
                });
                assertThat(s3.list(repo, "packs/")).as("packs stored before the server stops").isNotEmpty();
                s3.stop();
                p.getOutputStream().write('\n');
                p.getOutputStream().close();
                assertThat(p.waitFor(3, java.util.concurrent.TimeUnit.MINUTES)).as("the backup gives up").isTrue();
            } finally {
                p.destroyForcibly();
            }
            String stderr = Files.readString(err);
            assertThat(p.exitValue()).as(stderr).isEqualTo(74);
            assertThat(stderr).as("names the failed object and the server").contains("backup: IO: ")
                    .contains("s3://" + repo.substring(5, repo.indexOf('/', 5))).contains(s3.endpoint().toString());
            assertThat(Files.readString(log)).isEmpty();
            assertThat(d.ok("snapshot", "collect")).as("the failed backup destroyed its snapshot").isEmpty();

            s3.start();
            CliRun none = d.cli(concat(new String[] {"points", "--device", "disk0"}, repoArgs(repo)));
            assertThat(none.exitCode()).as("no point: " + none).isEqualTo(66);
            JsonNode next = backup(d, repo, "1M");
            assertThat(next.path("kind").asString()).isEqualTo("full");
            assertThat(ok(d, repo, "verify")).startsWith("ok: 1 point(s)");
            Path out = dir.resolve("restored.img");
            ok(d, repo, "restore", "--point", next.path("id").asString(), "--to", out.toString());
            assertSameBytes(out, rec);
            String gc = ok(d, repo, "gc", "--grace", "PT0S");
            assertThat(Integer.parseInt(gc.split(" ")[1])).as("the failed backup's packs go: " + gc).isPositive();
            assertThat(ok(d, repo, "verify")).startsWith("ok: 1 point(s)");
        }
    }

    @Test
    @org.junit.jupiter.api.Timeout(value = 10, unit = java.util.concurrent.TimeUnit.MINUTES)
    void anEncryptedS3RepositoryTakesBackupsOnlyWithItsKeyAndRestoresEveryPointBitForBit() throws Exception {
        ExternalTool.require("nbdcopy", "qemu-io");
        String repo = s3.newRepo("enc");
        Path key = dir.resolve("enc.key");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=16M"), List.of())) {
            CliRun init = d.cli(concat(new String[] {"repo", "init", "--encrypt", "--key-file", key.toString()}, repoArgs(repo)));
            assertThat(init.exitCode()).as(init.toString()).isZero();
            byte[] data = new byte[16 << 20];
            new Random(99).nextBytes(data);
            byte[] line = "encrypted before it leaves the host\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
            for (int i = 8 << 20; i < 12 << 20; i++) {
                data[i] = line[i % line.length];
            }
            Path image = dir.resolve("enc-initial.img");
            Files.write(image, data);
            nbdcopy(image.toString(), d.uri("disk0"));

            // without the key: KEY, before a snapshot is made or an object written
            CliRun refused = d.cli(concat(new String[] {"backup", "--device", "disk0", "--storage-size", "16M"}, repoArgs(repo)));
            assertThat(refused.exitCode()).as(refused.toString()).isEqualTo(77);
            assertThat(refused.err()).contains("backup: KEY: repository " + repo + " is encrypted");
            assertThat(s3.list(repo, "packs/")).isEmpty();
            assertThat(s3.list(repo, "sessions/")).isEmpty();
            assertThat(d.ok("snapshot", "collect")).isEmpty();

            String[] keyed = {"--key-file", key.toString()};
            List<String> ids = new ArrayList<>();
            List<Path> recs = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                if (i == 1) {
                    Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x5a 1M 64k", "write -P 0x5b 9M 128k");
                } else if (i == 2) {
                    Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x11 15M 4k");
                }
                recs.add(record(d, "enc-rec" + i + ".img"));
                CliRun r = d.cli(concat(concat(new String[] {"--json", "backup", "--device", "disk0", "--storage-size", "16M",
                        "--pack-size", "1M"}, repoArgs(repo)), keyed));
                assertThat(r.exitCode()).as(r.toString()).isZero();
                JsonNode p = json.readTree(r.out()).path("points").get(0);
                assertThat(p.path("kind").asString()).isEqualTo(i == 0 ? "full" : "incremental");
                ids.add(p.path("id").asString());
            }
            for (int i = 0; i < 3; i++) {
                Path out = dir.resolve("enc-restored" + i + ".img");
                ok(d, repo, concat(new String[] {"restore", "--point", ids.get(i), "--to", out.toString()}, keyed));
                assertSameBytes(out, recs.get(i));
            }
            assertThat(ok(d, repo, concat(new String[] {"verify"}, keyed))).startsWith("ok: 3 point(s)");
            assertThat(ok(d, repo, concat(new String[] {"prune", "--keep-last", "1"}, keyed))).contains("remove " + ids.get(0));
            assertThat(ok(d, repo, concat(new String[] {"gc", "--grace", "PT0S"}, keyed))).contains("in use by 1 point(s)");
            Path out = dir.resolve("enc-restored-last.img");
            ok(d, repo, concat(new String[] {"restore", "--point", ids.get(2), "--to", out.toString()}, keyed));
            assertSameBytes(out, recs.get(2));
            CliRun noKey = d.cli(concat(new String[] {"points"}, repoArgs(repo)));
            assertThat(noKey.exitCode()).as(noKey.toString()).isEqualTo(77);
        }
    }

    static String[] concat(String[] a, String[] b) {
        String[] all = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        return all;
    }
}
