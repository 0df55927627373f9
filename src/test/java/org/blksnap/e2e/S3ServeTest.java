package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.blksnap.backup.Point;
import org.blksnap.backup.Repository;
import org.blksnap.backup.RepositoryKey;
import org.blksnap.backup.RepositoryLocation;
import org.blksnap.cli.CliRun;
import org.blksnap.nbd.FileExportServer;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.S3Server;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code blksnap serve --repo s3://...} (its own process) against a real S3 server (s3proxy, or
 * {@code BLKSNAP_TEST_S3_ENDPOINT}), unencrypted and encrypted ({@code $BLKSNAP_KEY_FILE}): every
 * point is listed by {@code nbdinfo --list}, read whole by {@code nbdcopy} bit for bit as it was
 * backed up, and {@code qemu-img compare} finds it equal to a restore; without its key the
 * encrypted repository is not served (KEY, 77).
 */
@Tag("system")
class S3ServeTest {
    static final Duration T = Duration.ofSeconds(120);
    static final int BLOCK = 64 << 10;
    static final long SIZE = 8L << 20;

    @org.junit.jupiter.api.io.TempDir
    Path dir;
    S3Server s3;

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

    private static byte[] content(long seed) {
        byte[] data = new byte[(int) SIZE];
        new Random(seed).nextBytes(data);
        byte[] line = "instant access from object storage\n".getBytes(StandardCharsets.US_ASCII);
        for (int i = (int) (SIZE / 2); i < SIZE * 3 / 4; i++) {
            data[i] = line[i % line.length];
        }
        java.util.Arrays.fill(data, (int) (SIZE * 3 / 4), (int) SIZE, (byte) 0);
        return data;
    }

    private static void write(String uri, byte[] data) {
        try {
            Path tmp = Files.createTempFile("s3serve", ".img");
            try {
                Files.write(tmp, data);
                ExternalTool.run(T, "nbdcopy", tmp.toString(), uri).assertSuccess();
            } finally {
                Files.deleteIfExists(tmp);
            }
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private Process serve(String repo, Path socket, Map<String, String> env, Path log) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED"));
        cmd.addAll(s3.jvmArgs());
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), "org.blksnap.cli.Main", "serve", "--repo", repo,
                "--s3-endpoint", s3.endpoint().toString(), "--socket", socket.toString()));
        return ExternalTool.start(env, dir, cmd, log);
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    @org.junit.jupiter.api.Timeout(value = 5, unit = TimeUnit.MINUTES)
    void pointsOfAnS3RepositoryAreServedBitForBitAndCompareEqualToARestore(boolean encrypted) throws Exception {
        ExternalTool.require("nbdcopy", "nbdinfo", "qemu-img");
        String repo = s3.newRepo(encrypted ? "enc" : "plain");
        String endpoint = s3.endpoint().toString();
        RepositoryLocation where = Repository.locate(repo, endpoint);
        Path keyFile = dir.resolve("repo.key");
        RepositoryKey key = null;
        List<String> keyArgs = List.of();
        if (encrypted) {
            CliRun init = CliRun.run(null, "repo", "init", "--repo", repo, "--s3-endpoint", endpoint, "--encrypt", "--key-file",
                    keyFile.toString());
            assertThat(init.exitCode()).as(init.toString()).isZero();
            key = RepositoryKey.load(keyFile);
            keyArgs = List.of("--key-file", keyFile.toString());
        }
        byte[] v1 = content(12);
        byte[] v2 = v1.clone();
        byte[] changed = new byte[3 * BLOCK];
        new Random(13).nextBytes(changed);
        System.arraycopy(changed, 0, v2, 5 * BLOCK, changed.length);
        List<Point> points = new ArrayList<>();
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0");
             Repository r = Repository.openForWriting(where, key, "h1", 1 << 20, m -> { })) {
            String uri = nbd.uri("disk0");
            write(uri, v1);
            points.add(r.backup(new Repository.BackupSource("disk0", uri, SIZE, BLOCK, "g", 1), null, Repository.Progress.NONE));
            write(uri, v2);
            byte[] map = new byte[(int) (SIZE / BLOCK)];
            java.util.Arrays.fill(map, 5, 8, (byte) 2);
            points.add(r.backup(new Repository.BackupSource("disk0", uri, SIZE, BLOCK, "g", 2), () -> map,
                    Repository.Progress.NONE));
        }
        assertThat(points.get(1).kind()).isEqualTo("incremental");
        byte[][] expected = {v1, v2};

        Path socket = dir.resolve("serve.sock");
        Path log = dir.resolve("serve.log");
        Process p = serve(repo, socket, encrypted ? Map.of("BLKSNAP_KEY_FILE", keyFile.toString()) : Map.of(), log);
        try {
            await().atMost(Duration.ofSeconds(60)).until(() -> Files.exists(log) && Files.readString(log).contains("serving ")
                    || !p.isAlive());
            assertThat(p.isAlive()).as("serve exited: %s", Files.readString(log)).isTrue();
            assertThat(Files.readString(log)).contains("of " + repo);
            String list = ExternalTool.run(T, "nbdinfo", "--list", "nbd+unix:///?socket=" + socket).assertSuccess().stdout();
            for (int i = 0; i < 2; i++) {
                String export = points.get(i).id() + "/disk0";
                String uri = "nbd+unix:///" + export + "?socket=" + socket;
                assertThat(list).contains(export);
                Path copy = dir.resolve("copy" + i + ".img");
                ExternalTool.run(T, "nbdcopy", uri, copy.toString()).assertSuccess();
                assertThat(Files.readAllBytes(copy)).as("point %d read over NBD", i).isEqualTo(expected[i]);
                Path restored = dir.resolve("restored" + i + ".img");
                List<String> args = new ArrayList<>(List.of("restore", "--repo", repo, "--s3-endpoint", endpoint, "--point",
                        points.get(i).id(), "--to", restored.toString()));
                args.addAll(keyArgs);
                CliRun r = CliRun.run(null, args.toArray(String[]::new));
                assertThat(r.exitCode()).as(r.toString()).isZero();
                ExternalTool.run(T, "qemu-img", "compare", "-f", "raw", "-F", "raw", restored.toString(), uri).assertSuccess();
            }
            p.destroy();
            assertThat(p.waitFor(30, TimeUnit.SECONDS)).as("serve stops on SIGTERM").isTrue();
        } finally {
            ExternalTool.killTree(p);
        }
        assertThat(socket).doesNotExist();

        if (encrypted) {
            Path log2 = dir.resolve("serve-nokey.log");
            Process q = serve(repo, dir.resolve("nokey.sock"), Map.of(), log2);
            try {
                assertThat(q.waitFor(60, TimeUnit.SECONDS)).as("serve without the key exits").isTrue();
                assertThat(q.exitValue()).as(Files.readString(log2)).isEqualTo(77);
                assertThat(Files.readString(log2)).contains("KEY: repository " + repo + " is encrypted");
            } finally {
                ExternalTool.killTree(q);
            }
        }
    }
}
