package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * Change tracking across a restart of the real daemon, seen through the blksnap tool and NBD
 * clients: a clean restart keeps the generation, the snapshot number and the map byte for byte, and
 * an incremental read after it ({@code nbdinfo --map=qemu:dirty-bitmap:...}) shows exactly the blocks
 * written before and after the restart; a device resized or a backing file written while the daemon
 * was stopped gets a new generation that says why, in {@code tracker collect}, in {@code status} and
 * as an event of the next snapshot.
 */
@Tag("system")
class PersistentCbtTest {
    static final int BLOCK = 64 << 10;
    static final List<String> DEVICES = List.of("disk0=64M");
    static final List<String> PARAMS = List.of("diff_storage_minimum=16384");
    @TempDir
    Path dir;
    final JsonMapper json = JsonMapper.builder().build();

    private String take(DaemonHarness d, String storage) {
        String id = d.ok("snapshot", "create", "--device", "disk0");
        d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve(storage).toString(), "--size", "32M");
        d.ok("snapshot", "take", "--id", id);
        return id;
    }

    @Test
    void aCleanRestartKeepsGenerationNumberAndMapAndAnIncrementalSpansIt() throws Exception {
        ExternalTool.require("qemu-io", "nbdinfo");
        String generation;
        byte[] m2;
        try (DaemonHarness d = DaemonHarness.start(dir, DEVICES, PARAMS)) {
            d.ok("snapshot", "destroy", "--id", take(d, "ds1"));
            Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x01 1M 64k");
            String id2 = take(d, "ds2");
            m2 = d.cbtMap("disk0", dir.resolve("m2"));
            d.ok("snapshot", "destroy", "--id", id2);
            Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x02 4M 64k"); // after take 2, before the restart
            JsonNode t = d.firstTracker();
            generation = t.path("generationId").asString();
            assertThat(t.path("snapNumber").asInt()).isEqualTo(2);
            assertThat(t.path("generationReason").asString()).isEqualTo("NEW_TRACKER");
        }
        assertThat(m2[16]).isEqualTo((byte) 2);
        try (DaemonHarness d = DaemonHarness.start(dir, DEVICES, PARAMS)) {
            JsonNode t = d.firstTracker();
            assertThat(t.path("generationId").asString()).isEqualTo(generation);
            assertThat(t.path("snapNumber").asInt()).isEqualTo(2);
            assertThat(t.path("generationReason").asString()).isEqualTo("NEW_TRACKER");
            assertThat(d.ok("tracker", "collect")).contains("generation=" + generation + " snap_number=2")
                    .contains("reason=NEW_TRACKER");
            Nbd.qemuIoOk(d.uri("disk0"), "write -P 0x03 8M 1M"); // after the restart
            String id3 = take(d, "ds3");
            byte[] m3 = d.cbtMap("disk0", dir.resolve("m3"));
            assertThat(m3).hasSize(m2.length);
            for (int b = 0; b < m3.length; b++) {
                int expected = b == 64 || (b >= 128 && b < 144) ? 3 : m2[b];
                assertThat(m3[b]).as("block %d", b).isEqualTo((byte) expected);
            }
            ExternalTool.Result since2 = ExternalTool.run(Duration.ofSeconds(30), "nbdinfo",
                    "--map=qemu:dirty-bitmap:blksnap:" + generation + ":2", d.uri("blksnap-image0")).assertSuccess();
            assertThat(since2.stdout().lines().map(String::trim).toList()).containsExactly(
                    "0     4194304    0  clean", "4194304       65536    1  dirty", "4259840     4128768    0  clean",
                    "8388608     1048576    1  dirty", "9437184    57671680    0  clean");
            Nbd.qemuIoOk(d.uri("blksnap-image0"), "read -P 0x02 4M 64k", "read -P 0x03 8M 1M", "read -P 0x01 1M 64k");
            d.ok("snapshot", "destroy", "--id", id3);
        }
    }

    /** Starts, tracks disk0 through one snapshot, stops; returns the generation. */
    private String trackedThenStopped() throws Exception {
        try (DaemonHarness d = DaemonHarness.start(dir, DEVICES, PARAMS)) {
            d.ok("snapshot", "destroy", "--id", take(d, "ds1"));
            return d.firstTracker().path("generationId").asString();
        }
    }

    private void assertNewGeneration(String old, String reason, String detail) throws Exception {
        // Served at the file's own size: a size given for an existing file must match it (device rules).
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0"), PARAMS)) {
            JsonNode t = d.firstTracker();
            assertThat(t.path("generationId").asString()).isNotEqualTo(old);
            assertThat(t.path("snapNumber").asInt()).isZero();
            assertThat(t.path("generationReason").asString()).isEqualTo(reason);
            assertThat(t.path("generationDetail").asString()).contains(detail);
            assertThat(d.ok("status")).contains("reason=" + reason);
            assertThat(d.ok("tracker", "collect")).contains("reason=" + reason).contains(detail);
            JsonNode status = json.readTree(d.ok("--json", "status"));
            assertThat(status.path("devices").get(0).path("tracker").path("generationReason").asString()).isEqualTo(reason);
            // the first snapshot over the device tells a backup tool through its events
            String id = d.ok("snapshot", "create", "--device", "disk0");
            assertThat(d.ok("snapshot", "wait-event", "--id", id, "--timeout", "0")).startsWith("low_free_space");
            JsonNode ev = json.readTree(d.ok("--json", "snapshot", "wait-event", "--id", id, "--timeout", "0"))
                    .path("event");
            assertThat(ev.path("name").asString()).isEqualTo("generation_reset");
            assertThat(ev.path("code").asInt()).isEqualTo(2);
            assertThat(ev.path("device").asString()).isEqualTo("disk0");
            assertThat(ev.path("generationId").asString()).isEqualTo(t.path("generationId").asString());
            assertThat(ev.path("reason").asString()).isEqualTo(reason);
            assertThat(ev.path("detail").asString()).contains(detail);
            d.fails(2, "ENOENT", "snapshot", "wait-event", "--id", id, "--timeout", "0");
            d.ok("snapshot", "destroy", "--id", id);
        }
    }

    @Test
    void aDeviceResizedWhileStoppedGetsANewGenerationSayingSizeChanged() throws Exception {
        String old = trackedThenStopped();
        try (RandomAccessFile f = new RandomAccessFile(dir.resolve("disk0.img").toFile(), "rw")) {
            f.setLength(96L << 20);
        }
        assertNewGeneration(old, "SIZE_CHANGED", "saved for 67108864 bytes");
    }

    @Test
    void aBackingFileWrittenWhileStoppedGetsANewGenerationSayingBackingChanged() throws Exception {
        ExternalTool.require("qemu-io");
        String old = trackedThenStopped();
        ExternalTool.run(Duration.ofSeconds(30), "qemu-io", "-f", "raw", "-c", "write -P 0x44 0 4k",
                dir.resolve("disk0.img").toString()).assertSuccess();
        assertNewGeneration(old, "BACKING_CHANGED", "mtime");
    }

    @Test
    void aBackingFileTouchedWhileStoppedGetsANewGenerationSayingBackingChanged() throws Exception {
        ExternalTool.require("touch");
        String old = trackedThenStopped();
        ExternalTool.run(Duration.ofSeconds(30), "touch", "-d", "2001-02-03 04:05:06",
                dir.resolve("disk0.img").toString()).assertSuccess();
        assertNewGeneration(old, "BACKING_CHANGED", "mtime");
    }
}
