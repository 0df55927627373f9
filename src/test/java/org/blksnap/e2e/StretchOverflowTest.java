package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.blksnap.cli.CliRun;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * Ports of upstream 2000-stretch and 2100-overflow with small sizes: {@code snapshot stretch} grows
 * the storage on low-space events up to its limit; past the limit the snapshot overflows with a
 * corrupted event (errno 28), image reads fail with EIO, and the original keeps working with its
 * data intact; destroy ends the stretch with exit 0.
 */
@Tag("system")
class StretchOverflowTest {
    @TempDir
    Path dir;
    final JsonMapper json = JsonMapper.builder().build();

    private JsonNode snapshot(DaemonHarness d) {
        return json.readTree(d.ok("--json", "status")).path("snapshots").get(0);
    }

    /** Waits until the stretch has given the snapshot at least {@code freeSectors} of free storage. */
    private void awaitStorage(DaemonHarness d, long freeSectors) {
        await().pollInterval(Duration.ofMillis(50)).until(() -> {
            JsonNode s = snapshot(d);
            return s.path("capacitySectors").asLong() - s.path("usedSectors").asLong() >= freeSectors;
        });
    }

    /** Waits until the snapshot is corrupted (its storage overflowed). */
    private void awaitCorrupted(DaemonHarness d) {
        await().pollInterval(Duration.ofMillis(50)).until(() -> "corrupted".equals(snapshot(d).path("state").asString()));
    }

    @Test
    void stretchGrowsTheStorageOnEventsAndAnOverflowCorruptsOnlyTheSnapshot() throws Exception {
        ExternalTool.require("qemu-io");
        // 2 MiB portions, 256 KiB chunks: the stretch adds 2 MiB files up to 6 MiB
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=32M"), List.of("diff_storage_minimum=4096"))) {
            String orig = d.uri("disk0");
            Nbd.qemuIoOk(orig, "write -P 0x11 0 32M");
            String id = d.ok("snapshot", "create", "--device", "disk0");
            Path storageDir = Files.createDirectory(dir.resolve("storage"));
            CompletableFuture<CliRun> stretch = CompletableFuture.supplyAsync(() -> d.cli("--json", "snapshot",
                    "stretch", "--id", id, "--dir", storageDir.toString(), "--limit", "6M", "--poll", "100"));
            awaitStorage(d, 4096);
            assertThat(storageDir.resolve("diff_storage#0")).exists();
            d.ok("snapshot", "take", "--id", id);
            // 2000: 4 MiB of writes in 512 KiB steps; the storage grows to keep up
            for (int off = 0; off < 4 << 20; off += 512 << 10) {
                Nbd.qemuIoOk(orig, "write -P 0x22 " + off + " 512k");
                awaitStorage(d, 2048);
            }
            JsonNode s = snapshot(d);
            assertThat(s.path("state").asString()).isEqualTo("taken");
            assertThat(s.path("capacitySectors").asLong()).isGreaterThan(4096);
            assertThat(storageDir.resolve("diff_storage#1")).exists();
            String image = d.uri("blksnap-image0");
            Nbd.qemuIoOk(image, "read -P 0x11 0 32M");
            // 2100: 16 MiB more cannot fit in 6 MiB: overflow
            Nbd.qemuIoOk(orig, "write -P 0x33 4M 16M");
            awaitCorrupted(d);
            assertThat(snapshot(d).path("corruptedErrno").asInt()).isEqualTo(28);
            ExternalTool.Result imageRead = Nbd.qemuIo(image, "read 0 64k");
            assertThat(imageRead.stdout() + imageRead.stderr()).as("image read after overflow")
                    .containsIgnoringCase("Input/output error");
            // the original keeps working and holds exactly what was written
            Nbd.qemuIoOk(orig, "read -P 0x22 0 4M", "read -P 0x33 4M 16M", "read -P 0x11 20M 12M");
            Nbd.qemuIoOk(orig, "write -P 0x44 24M 1M", "read -P 0x44 24M 1M");
            d.ok("snapshot", "destroy", "--id", id);
            CliRun r = stretch.get(20, TimeUnit.SECONDS);
            assertThat(r.exitCode()).as(r.toString()).isZero();
            List<JsonNode> lines = r.out().lines().map(json::readTree).toList();
            assertThat(lines).filteredOn(l -> l.path("stretch").asString().equals("appended")).hasSize(3);
            assertThat(lines).anySatisfy(l -> assertThat(l.path("stretch").asString()).isEqualTo("limit_reached"));
            assertThat(lines).anySatisfy(l -> {
                assertThat(l.path("event").path("name").asString()).isEqualTo("corrupted");
                assertThat(l.path("event").path("errno").asInt()).isEqualTo(28);
                assertThat(l.path("event").path("device").asString()).isEqualTo("disk0");
            });
            assertThat(lines.getLast().path("stretch").asString()).isEqualTo("snapshot_gone");
            assertThat(storageDir).isEmptyDirectory();
        }
    }

    /**
     * As upstream 1200-tmpfs_diff_storage, with the filesystem filling up: the stretch directory is
     * a 5 MiB tmpfs, far below the 1 GiB limit. The stretch appends what fits, reports the rest as
     * a partial append or a failure and keeps watching; the overflow that follows corrupts only the
     * snapshot; nothing a failed append made is left on the tmpfs.
     */
    @Test
    void aStretchDirectoryOnAFullFilesystemGivesWhatFitsThenTheSnapshotOverflowsCleanly() throws Exception {
        ExternalTool.require("root", "mount", "umount", "qemu-io");
        Path small = Files.createDirectory(dir.resolve("tmpfs"));
        ExternalTool.run(java.time.Duration.ofSeconds(30), "mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs",
                small.toString()).assertSuccess();
        try (DaemonHarness d = DaemonHarness.start(dir.resolve("data"), List.of("disk0=32M"),
                List.of("diff_storage_minimum=4096"))) {
            String orig = d.uri("disk0");
            Nbd.qemuIoOk(orig, "write -P 0x11 0 32M");
            String id = d.ok("snapshot", "create", "--device", "disk0");
            // By hand, too big for the filesystem: a clear ENOSPC (exit 28), and nothing left behind.
            CliRun tooBig = d.fails(28, "ENOSPC", "snapshot", "append-storage", "--id", id,
                    "--file", small.resolve("too-big.img").toString(), "--size", "64M");
            assertThat(tooBig.err()).contains("too-big.img");
            assertThat(small).isEmptyDirectory();
            CompletableFuture<CliRun> stretch = CompletableFuture.supplyAsync(() -> d.cli("--json", "snapshot",
                    "stretch", "--id", id, "--dir", small.toString(), "--limit", "1G", "--poll", "100"));
            awaitStorage(d, 4096);
            d.ok("snapshot", "take", "--id", id);
            for (int off = 0; off < 3 << 20; off += 512 << 10) {
                Nbd.qemuIoOk(orig, "write -P 0x22 " + off + " 512k");
                awaitStorage(d, 2048);
            }
            Nbd.qemuIoOk(orig, "write -P 0x33 3M 16M");
            awaitCorrupted(d);
            assertThat(snapshot(d).path("corruptedErrno").asInt()).isEqualTo(28);
            Nbd.qemuIoOk(orig, "read -P 0x22 0 3M", "read -P 0x33 3M 16M", "read -P 0x11 19M 13M");
            d.ok("snapshot", "destroy", "--id", id);
            CliRun r = stretch.get(20, TimeUnit.SECONDS);
            assertThat(r.exitCode()).as(r.toString()).isZero();
            List<JsonNode> lines = r.out().lines().map(json::readTree).toList();
            assertThat(lines).as(r.toString()).anySatisfy(l -> assertThat(
                    l.path("stretch").asString().equals("grow_failed")
                            || l.path("stretch").asString().equals("appended")
                            && l.path("sizeBytes").asLong() < l.path("requestedBytes").asLong()).isTrue());
            assertThat(lines).noneSatisfy(l -> assertThat(l.path("stretch").asString()).isEqualTo("limit_reached"));
            assertThat(lines).anySatisfy(l -> assertThat(l.path("event").path("errno").asInt()).isEqualTo(28));
            assertThat(lines.getLast().path("stretch").asString()).isEqualTo("snapshot_gone");
            assertThat(small).as("no file of a failed append is left").isEmptyDirectory();
        } finally {
            ExternalTool.run(java.time.Duration.ofSeconds(30), "umount", small.toString()).assertSuccess();
        }
    }
}
