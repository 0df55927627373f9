package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.List;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;

/**
 * Port of upstream 3000-cbt, with the checks upstream leaves out: the map read while a snapshot is
 * held does not change although writes go on; the generation stays the same across cycles; snap
 * numbers go 1, 2, 3, 4; blocks written in cycle k carry k+1 in cycle k+1's map; untouched blocks
 * keep their values; mark-dirty shows at once; and the image's qemu:dirty-bitmap context agrees.
 */
@Tag("system")
class CbtCyclesTest {
    static final int BLOCK = 64 << 10;
    @TempDir
    Path dir;

    private String takeCycle(DaemonHarness d, int cycle) {
        String id = d.ok("snapshot", "create", "--device", "disk0");
        d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("ds" + cycle).toString(), "--size", "32M");
        d.ok("snapshot", "take", "--id", id);
        return id;
    }

    @Test
    void theMapIsFrozenWhileHeldAndNumbersWritesByCycleWithinOneGeneration() throws Exception {
        ExternalTool.require("qemu-io", "nbdinfo");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of("diff_storage_minimum=16384"))) {
            String orig = d.uri("disk0");
            // a write between create and the first take is tracked with number 1
            String id1 = d.ok("snapshot", "create", "--device", "disk0");
            Nbd.qemuIoOk(orig, "write -P 0x01 1M 64k");
            d.ok("snapshot", "append-storage", "--id", id1, "--file", dir.resolve("ds1").toString(), "--size", "32M");
            d.ok("snapshot", "take", "--id", id1);
            JsonNode t1 = d.firstTracker();
            String generation = t1.path("generationId").asString();
            assertThat(t1.path("snapNumber").asInt()).isEqualTo(1);
            assertThat(t1.path("blockSizeBytes").asInt()).isEqualTo(BLOCK);
            byte[] m1 = d.cbtMap("disk0", dir.resolve("cbt1.map"));
            assertThat(m1).hasSize(1024);
            assertThat(m1[16]).isEqualTo((byte) 1);
            Nbd.qemuIoOk(orig, "write -P 0x02 4M 1M");
            assertThat(d.cbtMap("disk0", dir.resolve("cbt1_.map"))).as("map while the snapshot is held").isEqualTo(m1);
            d.ok("snapshot", "destroy", "--id", id1);

            String id2 = takeCycle(d, 2);
            JsonNode t2 = d.firstTracker();
            assertThat(t2.path("generationId").asString()).isEqualTo(generation);
            assertThat(t2.path("snapNumber").asInt()).isEqualTo(2);
            byte[] m2 = d.cbtMap("disk0", dir.resolve("cbt2.map"));
            for (int b = 0; b < 1024; b++) {
                int expected = b >= 64 && b < 80 ? 2 : m1[b];
                assertThat(m2[b]).as("block %d in cycle 2", b).isEqualTo((byte) expected);
            }
            Nbd.qemuIoOk(orig, "write -P 0x03 8M 1M");
            assertThat(d.cbtMap("disk0", dir.resolve("cbt2_.map"))).isEqualTo(m2);
            d.ok("snapshot", "destroy", "--id", id2);

            String id3 = takeCycle(d, 3);
            JsonNode t3 = d.firstTracker();
            assertThat(t3.path("generationId").asString()).isEqualTo(generation);
            assertThat(t3.path("snapNumber").asInt()).isEqualTo(3);
            byte[] m3 = d.cbtMap("disk0", dir.resolve("cbt3.map"));
            for (int b = 0; b < 1024; b++) {
                int expected = b >= 128 && b < 144 ? 3 : m2[b];
                assertThat(m3[b]).as("block %d in cycle 3", b).isEqualTo((byte) expected);
            }
            // the image export shows the map as dirty bitmaps: changed since snapshot 2 = the 1 MiB at 8 MiB
            String image = d.uri("blksnap-image0");
            ExternalTool.Result list = ExternalTool.run(java.time.Duration.ofSeconds(30), "nbdinfo",
                    "--map=qemu:dirty-bitmap:blksnap:" + generation + ":2", image).assertSuccess();
            assertThat(list.stdout().lines().map(String::trim).toList()).containsExactly(
                    "0     8388608    0  clean", "8388608     1048576    1  dirty", "9437184    57671680    0  clean");
            ExternalTool.Result since0 = ExternalTool.run(java.time.Duration.ofSeconds(30), "nbdinfo",
                    "--map=qemu:dirty-bitmap:blksnap:" + generation + ":0", image).assertSuccess();
            assertThat(since0.stdout()).contains("1048576       65536    1  dirty").contains("4194304     1048576    1  dirty");
            ExternalTool.Result stale = ExternalTool.run(java.time.Duration.ofSeconds(30), "nbdinfo",
                    "--map=qemu:dirty-bitmap:blksnap:" + java.util.UUID.randomUUID() + ":0", image);
            assertThat(stale.exitCode()).as("a stale generation does not resolve: %s", stale.describe()).isNotZero();
            assertThat(stale.stderr()).contains("server does not support metadata context");
            d.ok("snapshot", "destroy", "--id", id3);

            // cycle 4: mark-dirty shows in the current map with the current number
            String id4 = takeCycle(d, 4);
            assertThat(d.firstTracker().path("snapNumber").asInt()).isEqualTo(4);
            byte[] m4 = d.cbtMap("disk0", dir.resolve("cbt4.map"));
            d.ok("tracker", "mark-dirty", "--device", "disk0", "--range", (200 * 128) + ":128");
            byte[] m4marked = d.cbtMap("disk0", dir.resolve("cbt4_.map"));
            for (int b = 0; b < 1024; b++) {
                assertThat(m4marked[b]).as("block %d after mark-dirty", b).isEqualTo(b == 200 ? (byte) 4 : m4[b]);
            }
            d.ok("snapshot", "destroy", "--id", id4);
        }
    }
}
