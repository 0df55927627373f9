package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.blksnap.cli.CliRun;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.S3Server;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * A fleet: three daemons (three hosts, separate data directories) back up into one repository at
 * the same time, a directory and an S3 bucket alike, with a gc running beside the second round.
 * Chunks one host stored before are not stored again by the others; nothing any point needs is
 * lost (verify, and every point restored bit for bit); {@code points} names each point's host.
 */
@Tag("system")
class FleetBackupTest {
    static final Duration T = Duration.ofSeconds(120);
    static final int HOSTS = 3;
    static final long GOLDEN_BYTES = 24L << 20;
    static final long UNIQUE_BYTES = 8L << 20;
    @TempDir
    Path dir;
    final JsonMapper json = JsonMapper.builder().build();

    @Test
    @org.junit.jupiter.api.Timeout(value = 10, unit = java.util.concurrent.TimeUnit.MINUTES) // S3 round trips on a loaded CI machine
    void threeDaemonsBackUpConcurrentlyIntoOneDirectoryRepository() throws Exception {
        fleet(new String[] {"--repo", dir.resolve("repo").toString()}, () -> directoryPackBytes(dir.resolve("repo")));
    }

    @Test
    @org.junit.jupiter.api.Timeout(value = 10, unit = java.util.concurrent.TimeUnit.MINUTES) // S3 round trips on a loaded CI machine
    void threeDaemonsBackUpConcurrentlyIntoOneS3Repository() throws Exception {
        try (S3Server s3 = S3Server.start(dir)) {
            String repo = s3.newRepo("fleet");
            fleet(new String[] {"--repo", repo, "--s3-endpoint", s3.endpoint().toString()},
                    () -> s3.list(repo, "packs/").stream().mapToLong(o -> o.size()).sum());
        }
    }

    private static long directoryPackBytes(Path repo) throws Exception {
        try (var s = Files.list(repo.resolve("packs"))) {
            long sum = 0;
            for (Path p : s.toList()) {
                sum += Files.size(p);
            }
            return sum;
        }
    }

    /** The same 24 MiB of random data on every host (an OS image), then 8 MiB of each host's own, then zeros. */
    private Path image(int host) throws Exception {
        byte[] data = new byte[64 << 20];
        byte[] golden = new byte[(int) GOLDEN_BYTES];
        new Random(42).nextBytes(golden);
        System.arraycopy(golden, 0, data, 0, golden.length);
        byte[] own = new byte[(int) UNIQUE_BYTES];
        new Random(100 + host).nextBytes(own);
        System.arraycopy(own, 0, data, (int) GOLDEN_BYTES, own.length);
        Path f = dir.resolve("image" + host + ".img");
        Files.write(f, data);
        return f;
    }

    private JsonNode backup(DaemonHarness d, String[] repo, int host) {
        List<String> args = new ArrayList<>(List.of("--json", "backup", "--host", "host" + host, "--device", "disk0",
                "--storage-size", "16M", "--storage-limit", "64M", "--pack-size", "1M"));
        args.addAll(List.of(repo));
        CliRun r = d.cli(args.toArray(String[]::new));
        assertThat(r.exitCode()).as("host%d: %s", host, r).isZero();
        return json.readTree(r.out()).path("points").get(0);
    }

    private static String[] with(String[] repo, String... args) {
        List<String> all = new ArrayList<>(List.of(args));
        all.addAll(List.of(repo));
        return all.toArray(String[]::new);
    }

    private void fleet(String[] repo, Callable<Long> packBytes) throws Exception {
        ExternalTool.require("nbdcopy", "qemu-io");
        List<DaemonHarness> daemons = new ArrayList<>();
        Map<String, Path> recordings = new java.util.concurrent.ConcurrentHashMap<>();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int h = 0; h < HOSTS; h++) {
                daemons.add(DaemonHarness.start(Files.createDirectories(dir.resolve("host" + h)), List.of("disk0=64M"), List.of()));
                ExternalTool.run(T, "nbdcopy", image(h).toString(), daemons.get(h).uri("disk0")).assertSuccess();
            }
            // host0 first, alone: its chunks are in the repository (and its index object) before the others begin
            JsonNode first = backup(daemons.get(0), repo, 0);
            recordings.put(first.path("id").asString(), record(daemons.get(0), "h0-1"));

            // round 1: the other two at once; each finds host0's golden chunks and stores only its own
            List<Future<JsonNode>> round1 = new ArrayList<>();
            for (int h = 1; h < HOSTS; h++) {
                int host = h;
                Path rec = record(daemons.get(h), "h" + h + "-1");
                round1.add(pool.submit(() -> {
                    JsonNode p = backup(daemons.get(host), repo, host);
                    recordings.put(p.path("id").asString(), rec);
                    return p;
                }));
            }
            for (Future<JsonNode> f : round1) {
                JsonNode p = f.get();
                assertThat(p.path("kind").asString()).isEqualTo("full");
                assertThat(p.path("newBytes").asLong()).as("only the host's own 8 MiB (and index nodes): %s", p)
                        .isBetween(UNIQUE_BYTES, UNIQUE_BYTES + (1L << 20));
            }
            long stored = packBytes.call();
            assertThat(stored).as("golden once, each host's own once").isBetween(GOLDEN_BYTES + HOSTS * UNIQUE_BYTES,
                    GOLDEN_BYTES + HOSTS * UNIQUE_BYTES + (4L << 20));

            // round 2: every host changes blocks and backs up at once, while prune and gc run beside them
            List<Future<JsonNode>> round2 = new ArrayList<>();
            for (int h = 0; h < HOSTS; h++) {
                int host = h;
                String uri = daemons.get(h).uri("disk0");
                Nbd.qemuIoOk(uri, "write -P 0x" + Integer.toHexString(0x50 + h) + " 1M 64k", "write -P 0x77 40M 1M");
                Path rec = record(daemons.get(h), "h" + h + "-2");
                round2.add(pool.submit(() -> {
                    JsonNode p = backup(daemons.get(host), repo, host);
                    recordings.put(p.path("id").asString(), rec);
                    return p;
                }));
            }
            DaemonHarness any = daemons.get(0);
            Future<String> gc = pool.submit(() -> {
                String out = "";
                for (int i = 0; i < 5; i++) {
                    out = any.ok(with(repo, "gc", "--grace", "PT0S"));
                }
                return out;
            });
            for (Future<JsonNode> f : round2) {
                assertThat(f.get().path("kind").asString()).isEqualTo("incremental");
            }
            gc.get();

            JsonNode points = json.readTree(any.ok(with(repo, "--json", "points"))).path("points");
            assertThat(points).hasSize(2 * HOSTS);
            for (int h = 0; h < HOSTS; h++) {
                String host = "host" + h;
                assertThat(points.valueStream().filter(p -> p.path("host").asString().equals(host)).count())
                        .as("points of %s", host).isEqualTo(2);
            }
            assertThat(any.ok(with(repo, "points", "--host", "host1"))).contains("host=host1").doesNotContain("host=host0");

            // keep the newest point of each host's disk0, then gc with nothing running: nothing a point needs goes
            String pruned = any.ok(with(repo, "prune", "--keep-last", "1"));
            assertThat(pruned.lines().filter(l -> l.startsWith("remove "))).hasSize(HOSTS);
            any.ok(with(repo, "gc", "--grace", "PT0S"));
            assertThat(any.ok(with(repo, "verify"))).startsWith("ok: " + HOSTS + " point(s)");
            JsonNode kept = json.readTree(any.ok(with(repo, "--json", "points"))).path("points");
            for (JsonNode p : kept) {
                String id = p.path("id").asString();
                Path out = dir.resolve("restored-" + id + ".img");
                any.ok(with(repo, "restore", "--point", id, "--to", out.toString()));
                assertThat(Files.mismatch(out, recordings.get(id))).as("point %s of %s", id, p.path("host")).isEqualTo(-1L);
            }
            assertThat(packBytes.call()).as("golden still once after gc").isLessThan(GOLDEN_BYTES + HOSTS * UNIQUE_BYTES
                    + (8L << 20));
        } finally {
            for (DaemonHarness d : daemons) {
                d.close();
            }
        }
    }

    private Path record(DaemonHarness d, String name) {
        Path f = dir.resolve(name + ".img");
        ExternalTool.run(T, "nbdcopy", d.uri("disk0"), f.toString()).assertSuccess();
        return f;
    }
}
