package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.List;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Port of upstream 6100-snapimage_write: raw writes into the image across chunk borders. */
@Tag("system")
class RawImageWriteTest {
    @TempDir
    Path dir;

    @Test
    void oneMiBPatternsWrittenIntoTheImageAcrossChunkBordersReadBackExactlyAndLeaveTheOriginalUntouched() throws Exception {
        ExternalTool.require("qemu-io");
        try (DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=16M"), List.of("diff_storage_minimum=8192"))) {
            String orig = d.uri("disk0");
            Nbd.qemuIoOk(orig, "write -P 0x11 0 16M");
            String id = d.ok("snapshot", "create", "--device", "disk0");
            d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("ds0").toString(), "--size", "16M");
            d.ok("snapshot", "take", "--id", id);
            assertThat(d.ok("snapshot", "images", "--id", id)).isEqualTo("disk0 blksnap-image0 " + d.uri("blksnap-image0"));
            String image = d.uri("blksnap-image0");
            Nbd.qemuIoOk(image, "write -P 0xa1 126k 1M", "write -P 0xa2 2174k 1M", "write -P 0xa3 4222k 1M");
            Nbd.qemuIoOk(image, "read -P 0x11 0 126k", "read -P 0xa1 126k 1M", "read -P 0x11 1150k 1024k",
                    "read -P 0xa2 2174k 1M", "read -P 0x11 3198k 1024k", "read -P 0xa3 4222k 1M",
                    "read -P 0x11 5246k 11138k");
            Nbd.qemuIoOk(orig, "read -P 0x11 0 16M");
            d.ok("snapshot", "destroy", "--id", id);
            Nbd.qemuIoOk(orig, "read -P 0x11 0 16M");
        }
    }
}
