package org.blksnap.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.blksnap.cli.CliRun;
import org.blksnap.nbd.NbdServer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DaemonTest {
    @TempDir
    Path dir;

    /** Starts blksnapd as a process (the test classpath), output to a file. */
    private Process startProcess(Path cwd, Path log, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "org.blksnap.daemon.Blksnapd"));
        cmd.addAll(List.of(args));
        return new ProcessBuilder(cmd).directory(cwd.toFile()).redirectErrorStream(true)
                .redirectOutput(log.toFile()).start();
    }

    /** Waits until the daemon printed {@code text}; fails at once if it exited first. */
    private static void awaitText(Path log, String text, Process p) {
        await().atMost(Duration.ofSeconds(30)).until(() -> {
            String out = Files.exists(log) ? Files.readString(log) : "";
            if (out.contains(text)) {
                return true;
            }
            if (!p.isAlive()) {
                throw new AssertionError("blksnapd exited before printing '" + text + "'; output:\n" + out);
            }
            return false;
        });
    }

    private static void stop(Process p) throws Exception {
        if (p.isAlive()) {
            p.destroy();
            if (!p.waitFor(20, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor();
            }
        }
    }

    private static boolean portFree(int port) {
        try (ServerSocket s = new ServerSocket()) {
            s.bind(new InetSocketAddress("127.0.0.1", port));
            return true;
        } catch (Exception e) {
            return false;
        }
    }

    @Test
    @Tag("system")
    void withNoArgumentsItServesA1GiBDisk0FromBlksnapDataAndPrintsTheNextSteps() throws Exception {
        org.junit.jupiter.api.Assumptions.assumeTrue(portFree(10809), "port 10809 is in use by another server");
        Path log = dir.resolve("out.txt");
        Process p = startProcess(dir, log);
        try {
            awaitText(log, "Stop with Ctrl-C", p);
            String out = Files.readString(log);
            Path data = dir.resolve("blksnap-data");
            assertThat(out).contains("disk0 (1G, " + data.resolve("disk0.img") + ")")
                    .contains("nbdinfo 'nbd://127.0.0.1:10809/disk0'")
                    .contains("control API    : " + data.resolve("control.sock"))
                    .contains("bin/blksnap snapshot create --device disk0");
            assertThat(Files.size(data.resolve("disk0.img"))).isEqualTo(1L << 30);
            assertThat(data.resolve("nbd.sock")).exists();
            CliRun version = CliRun.run(data.resolve("control.sock"), "version");
            assertThat(version.line()).isEqualTo("1.0.0.0");
        } finally {
            stop(p);
        }
    }

    @Test
    void aSecondDaemonOnTheSameDataDirectoryRefusesToStart() throws Exception {
        Path data = dir.resolve("data");
        Blksnapd first = new Blksnapd();
        StringWriter out1 = new StringWriter();
        assertThat(first.execute(new String[] {"--data-dir", data.toString(), "--listen", "none",
                "--device", "d0=" + data.resolve("d0.img") + ":4M"}, new PrintWriter(out1), new PrintWriter(out1), false))
                .as(out1.toString()).isZero();
        try {
            StringWriter out2 = new StringWriter();
            int rc = new Blksnapd().execute(new String[] {"--data-dir", data.toString(), "--listen", "none",
                    "--device", "d0=" + data.resolve("d0.img") + ":4M"}, new PrintWriter(out2), new PrintWriter(out2), false);
            assertThat(rc).isEqualTo(Blksnapd.EXIT_IN_USE);
            assertThat(out2.toString()).contains("another blksnapd (pid " + ProcessHandle.current().pid() + ")")
                    .contains("is already using the data directory " + data);
            assertThat(CliRun.run(data.resolve("control.sock"), "version").exitCode()).isZero();
        } finally {
            first.daemon().close();
        }
    }

    @Test
    void sigtermDestroysSnapshotsSavesTrackersAndReleasesEverything() throws Exception {
        Path data = dir.resolve("data");
        Path log = dir.resolve("log.txt");
        Process p = startProcess(dir, log, "--data-dir", data.toString(), "--listen", "none", "--device",
                "d0=" + dir.resolve("d0.img") + ":8M", "--param", "diff_storage_minimum=4096");
        try {
            awaitText(log, "Stop with Ctrl-C", p);
            Path control = data.resolve("control.sock");
            String id = CliRun.run(control, "snapshot", "create", "--device", "d0").line();
            assertThat(CliRun.run(control, "snapshot", "append-storage", "--id", id, "--file",
                    dir.resolve("ds").toString(), "--size", "4M").exitCode()).isZero();
            assertThat(CliRun.run(control, "snapshot", "take", "--id", id).exitCode()).isZero();
            p.destroy(); // SIGTERM
            assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
            String out = Files.readString(log);
            assertThat(out).contains("snapshot " + id + " destroyed at exit").contains("d0: tracker saved (generation")
                    .contains("NBD server closed").contains("stopped").doesNotContain("tracker of d0 removed");
            assertThat(out.indexOf("destroyed at exit")).isLessThan(out.indexOf("NBD server closed"));
            assertThat(out.indexOf("NBD server closed")).as("no write can arrive after the save")
                    .isLessThan(out.indexOf("d0: tracker saved"));
            assertThat(data.resolve("state/trackers/d0/checkpoint")).exists();
            assertThat(control).doesNotExist();
            assertThat(data.resolve("nbd.sock")).doesNotExist();
            assertThat(out).doesNotContain("Exception");
        } finally {
            stop(p);
        }
        // the lock is gone with the process: a new daemon starts on the same directory
        Blksnapd again = new Blksnapd();
        StringWriter w = new StringWriter();
        assertThat(again.execute(new String[] {"--data-dir", data.toString(), "--listen", "none", "--device",
                "d0=" + dir.resolve("d0.img")}, new PrintWriter(w), new PrintWriter(w), false)).as(w.toString()).isZero();
        again.daemon().close();
    }

    @Test
    void aConfigFileGivesDevicesParamsAndSocketsAndFlagsOverrideIt() throws Exception {
        Path data = dir.resolve("data");
        Path cfg = dir.resolve("blksnapd.properties");
        Files.writeString(cfg, "data-dir=" + data + "\nlisten=none\ndevice=a=" + dir.resolve("a.img") + ":4M,b="
                + dir.resolve("b.img") + ":8M\nparam=diff_storage_minimum=8192\nlog-level=WARN\nlarge-reads=sendfile\n");
        Blksnapd d = new Blksnapd();
        StringWriter w = new StringWriter();
        assertThat(d.execute(new String[] {"--config", cfg.toString(), "--param", "chunk_minimum_shift=16"},
                new PrintWriter(w), new PrintWriter(w), false)).as(w.toString()).isZero();
        try {
            Path control = data.resolve("control.sock");
            assertThat(CliRun.run(control, "device", "list").out()).contains("a 4194304").contains("b 8388608")
                    .contains(" config " + dir.resolve("a.img"));
            assertThat(CliRun.run(control, "params", "diff_storage_minimum").line()).isEqualTo("8192");
            assertThat(CliRun.run(control, "params", "chunk_minimum_shift").line()).isEqualTo("16");
            assertThat(d.daemon().config().nbd().largeReads()).isEqualTo(NbdServer.LargeReads.SENDFILE);
        } finally {
            d.daemon().close();
            Blksnapd.setLogLevel("INFO");
        }
    }

    @Test
    void badArgumentsExit64WithAClearMessage() {
        StringWriter w = new StringWriter();
        assertThat(new Blksnapd().execute(new String[] {"--data-dir", dir.toString(), "--device", "bad"},
                new PrintWriter(w), new PrintWriter(w), false)).isEqualTo(64);
        assertThat(w.toString()).contains("--device ('bad') must be NAME=PATH[:SIZE]");
        StringWriter w2 = new StringWriter();
        assertThat(new Blksnapd().execute(new String[] {"--data-dir", dir.toString(), "--listen", "none",
                "--param", "chunk_minimum_shift=3"}, new PrintWriter(w2), new PrintWriter(w2), false)).isEqualTo(64);
        assertThat(w2.toString()).contains("chunk_minimum_shift (3) must be >= 12");
        StringWriter w3 = new StringWriter();
        assertThat(new Blksnapd().execute(new String[] {"--data-dir", dir.toString(), "--listen", "none",
                "--device", "d0=" + dir.resolve("d0.img") + ":12Q"}, new PrintWriter(w3), new PrintWriter(w3), false))
                .isEqualTo(64);
        assertThat(w3.toString()).contains("size of device d0 ('12Q') must be a size such as 512, 64K, 128M, 1G");
        StringWriter w4 = new StringWriter();
        assertThat(new Blksnapd().execute(new String[] {"--data-dir", dir.toString(), "--listen", "none",
                "--param", "chunk_minimum_shift=abc"}, new PrintWriter(w4), new PrintWriter(w4), false)).isEqualTo(64);
        assertThat(w4.toString()).contains("value of chunk_minimum_shift ('abc') is not a whole number");
        StringWriter w5 = new StringWriter();
        assertThat(new Blksnapd().execute(new String[] {"--data-dir", dir.toString(), "--listen", "none",
                "--large-reads", "splice"}, new PrintWriter(w5), new PrintWriter(w5), false)).isEqualTo(64);
        assertThat(w5.toString()).contains("--large-reads 'splice' must be auto, sendfile or copy");
    }

    /** --device follows the rules of blksnap device add: a size is never ignored, directories are never made. */
    @Test
    void aDeviceWhoseStoreCannotBeOpenedAsGivenStopsTheStartSayingWhy() throws Exception {
        Path existing = dir.resolve("e.img");
        Files.write(existing, new byte[8192]);
        StringWriter w = new StringWriter();
        assertThat(new Blksnapd().execute(new String[] {"--data-dir", dir.resolve("data").toString(), "--listen", "none",
                "--device", "d0=" + existing + ":16K"}, new PrintWriter(w), new PrintWriter(w), false)).isEqualTo(64);
        assertThat(w.toString()).contains("is 8192 bytes (8K), not the 16384 bytes (16K) given");
        StringWriter w2 = new StringWriter();
        assertThat(new Blksnapd().execute(new String[] {"--data-dir", dir.resolve("data").toString(), "--listen", "none",
                "--device", "d0=" + dir.resolve("nodir/d0.img") + ":1M"}, new PrintWriter(w2), new PrintWriter(w2), false))
                .isEqualTo(1);
        assertThat(w2.toString()).contains("cannot start: ENOENT: directory " + dir.resolve("nodir") + " of device d0"
                + " does not exist");
        assertThat(dir.resolve("nodir")).doesNotExist();
        StringWriter w3 = new StringWriter();
        assertThat(new Blksnapd().execute(new String[] {"--data-dir", dir.resolve("data").toString(), "--listen", "none",
                "--device", "a/b=" + dir.resolve("ab.img") + ":1M"}, new PrintWriter(w3), new PrintWriter(w3), false))
                .as("the engine judges the name").isEqualTo(64);
        assertThat(w3.toString()).contains("device name 'a/b' must be");
        assertThat(dir.resolve("ab.img")).as("a file created for a refused device is deleted").doesNotExist();
    }

    @Test
    void metricsServeStorageAndSnapshotGaugesInPrometheusFormat() throws Exception {
        Path data = dir.resolve("data");
        DaemonConfig config = new DaemonConfig(data, List.of(new DeviceSpec("m0", dir.resolve("m0.img"), 8 << 20)),
                null, data.resolve("nbd.sock"), data.resolve("control.sock"), List.of("diff_storage_minimum=4096"),
                new InetSocketAddress("127.0.0.1", 0), false, "INFO");
        try (Daemon d = Daemon.start(config)) {
            Path control = data.resolve("control.sock");
            String id = CliRun.run(control, "snapshot", "create", "--device", "m0").line();
            CliRun.run(control, "snapshot", "append-storage", "--id", id, "--file", dir.resolve("ds").toString(),
                    "--size", "4M");
            CliRun.run(control, "snapshot", "wait-event", "--id", id, "--timeout", "100");
            InetSocketAddress a = d.metricsAddress();
            HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + a.getPort() + "/metrics")).timeout(Duration.ofSeconds(10)).build(),
                    HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            assertThat(r.statusCode()).isEqualTo(200);
            assertThat(r.body()).contains("blksnap_storage_capacity_bytes{snapshot=\"" + id + "\"} 4194304.0")
                    .contains("blksnap_snapshot_state{snapshot=\"" + id + "\",state=\"created\"} 1.0")
                    .contains("blksnap_events_total{name=\"low_free_space\"} 1.0")
                    .contains("blksnap_device_size_bytes{device=\"m0\"}");
        }
    }
}
