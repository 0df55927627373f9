package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.blksnap.testing.ExternalTool.Result;
import org.blksnap.testing.ExternalTool;
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
    void qemuImgAndNbdinfoBeyondMaxConnectionsAreRefusedWithTheReasonAndServedOnceThereIsRoom() throws Exception {
        ExternalTool.require("qemu-img", "nbdinfo");
        NbdServer limited = new NbdServer(exports, NbdServer.Config.defaults().withMaxConnections(1));
        try {
            Path at = limited.listenUnix(dir.resolve("limited.sock"));
            String uri = "nbd+unix:///disk?socket=" + at;
            NbdTestClient holder = NbdTestClient.connect(java.net.UnixDomainSocketAddress.of(at));
            holder.go("disk", true);

            Result qemu = ExternalTool.run(T, "qemu-img", "info", uri);
            assertThat(qemu.exitCode()).isNotZero();
            assertThat(qemu.stderr()).contains("too many connections to this server (1 connections already, the limit)");
            Result info = ExternalTool.run(T, "nbdinfo", uri);
            assertThat(info.exitCode()).isNotZero();
            assertThat(info.stderr()).contains("opt_go");

            holder.disconnect();
            holder.close();
            org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> limited.connectionCount() == 0);
            assertThat(ExternalTool.run(T, "qemu-img", "info", uri).assertSuccess().stdout()).contains("64 MiB");
        } finally {
            limited.close();
        }
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

    @Test
    void qemuIoInDefaultWritethroughModeWritesWithFuaAndReadsBack() {
        ExternalTool.require("qemu-io");
        ExternalTool.run(T, List.of("qemu-io", "-f", "raw", uri("disk"), "-c", "write -P 0x5a 0 2M",
                "-c", "read -P 0x5a 0 2M", "-c", "write -P 0x6b 3M 4k", "-c", "read -P 0x6b 3M 4k")).assertSuccess();
        assertThat(server.stats().get("disk").bytesWritten()).isEqualTo(2 * MiB + 4096);
    }

    @Test
    void nbdinfoListsEveryExportWithDescriptions() {
        ExternalTool.require("nbdinfo");
        Result r = ExternalTool.run(T, "nbdinfo", "--list", uri("")).assertSuccess();
        assertThat(r.stdout()).contains("export=\"disk\"").contains("export=\"ro\"").contains("test export ro");
    }

    @Test
    void nbdinfoCanReportsEveryCapabilityOfAWritableExport() {
        ExternalTool.require("nbdinfo");
        for (String can : List.of("connect", "read", "write", "fua", "flush", "trim", "zero", "fast-zero", "cache", "df",
                "multi-conn", "structured-reply")) {
            Result r = ExternalTool.run(T, "nbdinfo", "--can", can, uri("disk"));
            assertThat(r.exitCode()).as("nbdinfo --can %s: %s", can, r.describe()).isZero();
        }
    }

    @Test
    void nbdinfoCanSaysNoToWritingOnAReadOnlyExport() {
        ExternalTool.require("nbdinfo");
        for (String can : List.of("write", "trim", "zero", "fast-zero")) {
            assertThat(ExternalTool.run(T, "nbdinfo", "--can", can, uri("ro")).exitCode()).as(can).isEqualTo(2);
        }
        assertThat(ExternalTool.run(T, "nbdinfo", "--is", "read-only", uri("ro")).exitCode()).isZero();
    }

    @Test
    void nbdinfoMapShowsDataAndHoles() {
        ExternalTool.require("nbdinfo", "qemu-io");
        ExternalTool.run(T, List.of("qemu-io", "-f", "raw", uri("disk"), "-c", "write -P 1 1M 64k")).assertSuccess();
        Result r = ExternalTool.run(T, "nbdinfo", "--map", uri("disk")).assertSuccess();
        assertThat(r.stdout().lines().map(String::trim).toList()).containsExactly(
                "0     1048576    3  hole,zero",
                "1048576       65536    0  data",
                "1114112    65994752    3  hole,zero");
    }

    @Test
    void nbdinfoMapOfTheDirtyBitmapShowsExactlyTheDirtyRanges() {
        ExternalTool.require("nbdinfo");
        Result r = ExternalTool.run(T, "nbdinfo", "--map=qemu:dirty-bitmap:b0", uri("ro")).assertSuccess();
        List<String> lines = r.stdout().lines().map(l -> l.trim().replaceAll("\\s+", " ")).toList();
        assertThat(lines).containsExactly("0 4194304 0 clean", "4194304 65536 1 dirty", "4259840 6225920 0 clean",
                "10485760 1048576 1 dirty", "11534336 5242880 0 clean");
    }

    @Test
    void nbdshNegotiatesOptionsOneByOne() {
        ExternalTool.require("nbdsh");
        Result r = ExternalTool.run(T, List.of("nbdsh", "-c", "h.set_opt_mode(True)",
                "-c", "h.connect_uri('" + uri("ro") + "')",
                "-c", "h.opt_list(lambda n, d: print('export', n, d))",
                "-c", "print('contexts', h.opt_list_meta_context(lambda n: print('ctx', n)))",
                "-c", "h.opt_info(); print('size', h.get_size(), 'ro', h.is_read_only())",
                "-c", "h.opt_abort()")).assertSuccess();
        assertThat(r.stdout()).contains("export disk test export disk", "export ro test export ro",
                "ctx base:allocation", "ctx qemu:dirty-bitmap:b0", "contexts 2", "size 16777216 ro True");
    }

    @Test
    void libnbdExercisesEveryCommandAndFlag() throws Exception {
        ExternalTool.require("/usr/bin/python3");
        Path script = dir.resolve("probe.py");
        Files.writeString(script, """
                import nbd, sys
                h = nbd.NBD()
                h.add_meta_context("base:allocation")
                h.connect_uri(sys.argv[1])
                assert h.get_structured_replies_negotiated()
                h.pwrite(b"\\x5a" * 65536, 1 << 20, nbd.CMD_FLAG_FUA)
                assert h.pread(65536, 1 << 20) == b"\\x5a" * 65536
                h.zero(65536, 2 << 20, nbd.CMD_FLAG_NO_HOLE)
                h.zero(65536, 3 << 20, nbd.CMD_FLAG_FAST_ZERO)
                h.trim(65536, 4 << 20)
                h.flush()
                h.cache(65536, 0)
                chunks = []
                h.pread_structured(65536, 1 << 20, lambda sub, off, st, err: chunks.append((off, len(sub), st)) or 0, nbd.CMD_FLAG_DF)
                assert chunks == [(1 << 20, 65536, 1)], chunks
                ext = []
                h.block_status(h.get_size(), 0, lambda m, o, e, err: ext.append((m, e)) or 0)
                print("extents", ext)
                one = []
                h.block_status(h.get_size(), 0, lambda m, o, e, err: one.append(e) or 0, nbd.CMD_FLAG_REQ_ONE)
                assert len(one) == 1 and len(one[0]) == 2, one
                cookies = [h.aio_pread(nbd.Buffer(4096), i * 4096) for i in range(64)]
                while h.aio_in_flight() > 0: h.poll(-1)
                assert all(h.aio_command_completed(c) for c in cookies)
                try:
                    h.pread(4096, h.get_size())
                    raise SystemExit("read past the end succeeded")
                except nbd.Error as e:
                    print("past end errno", e.errno)
                h.shutdown()
                print("ok")
                """);
        Result r = ExternalTool.run(T, "/usr/bin/python3", script.toString(), uri("disk")).assertSuccess();
        assertThat(r.stdout()).contains("ok");
    }

    @Test
    void anUnknownOptionOverARawSocketIsUnsupportedAndTheHandshakeGoesOn() throws Exception {
        try (NbdTestClient c = NbdTestClient.connect(java.net.UnixDomainSocketAddress.of(socket))) {
            c.start();
            assertThat(c.option(4711, new byte[] {1, 2})).extracting(NbdTestClient.OptionReply::type)
                    .containsExactly(NbdHandshakeDescriptor.REP_ERR_UNSUP);
            assertThat(c.negotiate("disk", true).sizeBytes()).isEqualTo(64 * MiB);
        }
    }

    @Test
    void qemuImgInfoMapConvertAndCompare() {
        ExternalTool.require("qemu-img", "qemu-io");
        ExternalTool.run(T, List.of("qemu-io", "-f", "raw", uri("disk"), "-c", "write -P 7 2M 1M")).assertSuccess();
        assertThat(ExternalTool.run(T, "qemu-img", "info", uri("disk")).assertSuccess().stdout())
                .contains("virtual size: 64 MiB");
        assertThat(ExternalTool.run(T, "qemu-img", "map", "--output=json", "-f", "raw", uri("disk")).assertSuccess()
                .stdout()).contains("\"start\": 2097152, \"length\": 1048576, \"depth\": 0, \"present\": true, \"zero\": false, \"data\": true");
        Path copy = dir.resolve("copy.qcow2");
        ExternalTool.run(T, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", uri("disk"), copy.toString()).assertSuccess();
        assertThat(ExternalTool.run(T, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", uri("disk"), copy.toString())
                .assertSuccess().stdout()).contains("Images are identical");
        // and back into the export
        Path src = dir.resolve("src.raw");
        ExternalTool.run(T, "qemu-img", "create", "-f", "raw", src.toString(), "64M").assertSuccess();
        ExternalTool.run(T, List.of("qemu-io", "-f", "raw", src.toString(), "-c", "write -P 9 10M 3M")).assertSuccess();
        ExternalTool.run(T, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src.toString(), uri("disk")).assertSuccess();
        assertThat(ExternalTool.run(T, "qemu-img", "compare", "-f", "raw", "-F", "raw", src.toString(), uri("disk"))
                .assertSuccess().stdout()).contains("Images are identical");
    }

    @Test
    void qemuImgMapReadsTheDirtyBitmap() {
        ExternalTool.require("qemu-img");
        Result r = ExternalTool.run(T, "qemu-img", "map", "--output=json", "--image-opts",
                "driver=nbd,server.type=unix,server.path=" + socket + ",export=ro,x-dirty-bitmap=qemu:dirty-bitmap:b0")
                .assertSuccess();
        // x-dirty-bitmap inverts the meaning: dirty ranges show as not present.
        assertThat(r.stdout()).contains("\"start\": 4194304, \"length\": 65536, \"depth\": 0, \"present\": false")
                .contains("\"start\": 10485760, \"length\": 1048576, \"depth\": 0, \"present\": false");
    }

    @Test
    void nbdcopyCopiesOutAndInAndTheBytesMatch() throws Exception {
        ExternalTool.require("nbdcopy", "qemu-io", "cmp");
        ExternalTool.run(T, List.of("qemu-io", "-f", "raw", uri("disk"), "-c", "write -P 3 0 5M", "-c", "write -P 4 40M 7M"))
                .assertSuccess();
        Path out = dir.resolve("out.img");
        ExternalTool.run(T, "nbdcopy", "--flush", uri("disk"), out.toString()).assertSuccess();
        ExternalTool.run(T, "cmp", dir.resolve("disk.img").toString(), out.toString()).assertSuccess();
        Path in = dir.resolve("in.img");
        byte[] random = new byte[64 * (int) MiB];
        new java.util.Random(42).nextBytes(random);
        Files.write(in, random);
        ExternalTool.run(T, "nbdcopy", "--flush", in.toString(), uri("disk")).assertSuccess();
        ExternalTool.run(T, "cmp", dir.resolve("disk.img").toString(), in.toString()).assertSuccess();
        ExternalTool.run(T, "nbdcopy", uri("disk"), "null:").assertSuccess();
    }

    @Test
    void fioVerifiesPipelinedRandomWritesWithCrc32c() {
        ExternalTool.require("fio");
        // fio leaves verify state files in its working directory: keep them in the temp dir.
        Result r = ExternalTool.run(Duration.ofSeconds(120), Map.of(), dir, List.of("fio", "--name=verify", "--ioengine=nbd",
                "--uri=" + uri("disk"), "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=32M",
                "--verify=crc32c", "--do_verify=1", "--verify_fatal=1")).assertSuccess();
        assertThat(r.stdout()).contains("err= 0");
        ExternalTool.run(Duration.ofSeconds(120), Map.of(), dir, List.of("fio", "--name=mixed", "--ioengine=nbd", "--uri=" + uri("disk"),
                "--rw=randrw", "--bs=64k", "--iodepth=16", "--size=16M", "--verify=crc32c", "--do_verify=1",
                "--verify_fatal=1")).assertSuccess();
        ExternalTool.run(Duration.ofSeconds(120), Map.of(), dir, List.of("fio", "--name=trim", "--ioengine=nbd", "--uri=" + uri("disk"),
                "--rw=trim", "--bs=64k", "--size=8M")).assertSuccess();
    }
}
