package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.ExternalTool.Result;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Our server against the real NBD clients, run exactly as a user would run them. */
@Tag("system")
class NbdInteropTest {
    static final Duration T = Duration.ofSeconds(60);
    static final long MiB = 1024 * 1024;

    @TempDir
    Path dir;
    TestExports exports;
    NbdServer server;
    Path socket;

    @BeforeEach
    void start() throws Exception {
        exports = new TestExports();
        exports.add(dir, "disk", 64 * MiB, false);
        exports.add(dir, "ro", 16 * MiB, true, new TestExports.DirtyBitmap("qemu:dirty-bitmap:b0", 16 * MiB,
                new long[][] {{4 * MiB, 64 * 1024}, {10 * MiB, MiB}}));
        server = new NbdServer(exports);
        socket = server.listenUnix(dir.resolve("nbd.sock"));
    }

    @AfterEach
    void stop() throws Exception {
        server.close();
        exports.close();
    }

    String uri(String export) {
        return "nbd+unix:///" + export + "?socket=" + socket;
    }

    @Test
    void nbdinfoJsonDescribesTheExport() {
        ExternalTool.require("nbdinfo");
        Result r = ExternalTool.run(T, "nbdinfo", "--json", uri("disk")).assertSuccess();
        assertThat(r.stdout()).contains("\"export-size\": " + 64 * MiB)
                .contains("\"is_read_only\": false")
                .contains("\"can_multi_conn\": true")
                .contains("\"protocol\": \"newstyle-fixed\"")
                .contains("\"block_size_preferred\": 4096");
    }

    @Test
    void qemuIoWritesAndReadsBackPatternsInWritebackMode() {
        ExternalTool.require("qemu-io");
        Result r = ExternalTool.run(T, List.of("qemu-io", "-t", "writeback", "-f", "raw", uri("disk"),
                "-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M", "-c", "write -P 0xcd -f 1M 64k",
                "-c", "flush", "-c", "write -z 2M 1M", "-c", "read -P 0 2M 1M", "-c", "write -z -u 3M 1M",
                "-c", "discard 4M 1M", "-c", "aio_write -P 0x11 5M 64k", "-c", "aio_write -P 0x22 6M 64k",
                "-c", "aio_flush", "-c", "read -P 0x22 6M 64k", "-c", "read -P 0xcd 1M 64k", "-c", "map")).assertSuccess();
        assertThat(r.stdout()).doesNotContain("Pattern verification failed").doesNotContain("error");
    }
}
