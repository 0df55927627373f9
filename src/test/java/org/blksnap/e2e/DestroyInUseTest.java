package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Port of upstream 7000-destroy: the snapshot is destroyed while clients read and write its image
 * over NBD. Destroy returns promptly, the clients are disconnected (no hang), the original is still
 * served with its data, and nothing of the snapshot is left.
 */
@Tag("system")
class DestroyInUseTest {
    /** What an image client's loop prints after each successful pass. */
    private static final String PASS = "pass-done";

    @TempDir
    Path dir;

    @Test
    void destroyWhileClientsReadAndWriteTheImageNeitherHangsNorHurtsTheOriginal() throws Exception {
        ExternalTool.require("qemu-io", "nbdcopy", "bash");
        List<Process> clients = new ArrayList<>();
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=32M"), List.of("diff_storage_minimum=16384"))) {
            String orig = d.uri("disk0");
            Nbd.qemuIoOk(orig, "write -P 0x5a 0 32M");
            String id = d.ok("snapshot", "create", "--device", "disk0");
            d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("ds").toString(), "--size", "64M");
            d.ok("snapshot", "take", "--id", id);
            String image = d.uri("blksnap-image0");
            // readers and writers of the image, and a writer of the original, each looping until it fails;
            // the image clients print a line after each pass, so the test knows they are in their loops
            List<Path> imageLogs = List.of(dir.resolve("reader1.log"), dir.resolve("reader2.log"), dir.resolve("writer.log"));
            clients.add(ExternalTool.start(Map.of(), dir, List.of("bash", "-c",
                    "while nbdcopy '" + image + "' null: ; do echo " + PASS + "; done"), imageLogs.get(0)));
            clients.add(ExternalTool.start(Map.of(), dir, List.of("bash", "-c",
                    "while qemu-io -f raw -c 'read 0 32M' '" + image + "' ; do echo " + PASS + "; done"), imageLogs.get(1)));
            clients.add(ExternalTool.start(Map.of(), dir, List.of("bash", "-c",
                    "while qemu-io -f raw -t none -c 'write -P 0x77 1M 8M' '" + image + "' ; do echo " + PASS + "; done"),
                    imageLogs.get(2)));
            Process origWriter = ExternalTool.start(Map.of(), dir, List.of("bash", "-c",
                    "for i in $(seq 1 20); do qemu-io -f raw -t none -c 'write -P 0x66 16M 4M' '" + orig + "' || exit 1; done"),
                    dir.resolve("orig.log"));
            clients.add(origWriter);
            await("every image client through a pass and on to the next").atMost(Duration.ofSeconds(60))
                    .until(() -> imageLogs.stream().allMatch(DestroyInUseTest::passed));
            long start = System.nanoTime();
            d.ok("snapshot", "destroy", "--id", id);
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(15));
            for (Process c : clients.subList(0, 3)) {
                assertThat(c.waitFor(20, TimeUnit.SECONDS)).as("image client ended after destroy").isTrue();
            }
            assertThat(origWriter.waitFor(60, TimeUnit.SECONDS)).isTrue();
            assertThat(origWriter.exitValue()).as("writes to the original went on").isZero();
            Nbd.qemuIoOk(orig, "read -P 0x5a 0 16M", "read -P 0x66 16M 4M", "read -P 0x5a 20M 12M");
            assertThat(d.ok("snapshot", "collect")).isEmpty();
            ExternalTool.Result gone = Nbd.qemuIo(image, "read 0 4k");
            assertThat(gone.exitCode()).as("the image export is gone: %s", gone.describe()).isNotZero();
            assertThat(gone.stderr()).as("the server's answer").contains("no export named 'blksnap-image0'");
            assertThat(d.ok("--json", "status")).contains("\"snapshots\":[]");
        } finally {
            clients.forEach(ExternalTool::killTree);
        }
    }

    private static boolean passed(Path log) {
        try {
            return Files.readAllLines(log).contains(PASS);
        } catch (IOException e) {
            throw new UncheckedIOException("reading " + log, e);
        }
    }
}
