package org.blksnap.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.blksnap.cli.CliRun;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.ExternalTool.Result;
import org.blksnap.testing.TlsCertificates;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * blksnapd's --tls, --allow and --read-only flags (and their config file keys) as a user runs them,
 * checked with nbdinfo, nbdcopy and qemu-io: TLS required, an export and its snapshot images visible
 * to one certificate subject only, a read-only device.
 */
@Tag("system")
class NbdSecurityDaemonTest {
    static final Duration T = Duration.ofSeconds(60);

    @TempDir
    Path dir;

    private Blksnapd start(StringWriter w, String... args) {
        Blksnapd d = new Blksnapd();
        int rc = d.execute(args, new PrintWriter(w), new PrintWriter(w), false);
        assertThat(rc).as(w.toString()).isZero();
        return d;
    }

    private String tls(Path socket, String export, Path clientDir) {
        return "nbds+unix:///" + export + "?socket=" + socket + "&tls-certificates=" + clientDir;
    }

    @Test
    void requiredTlsAnAllowListThatCoversTheImagesOfItsDeviceAndAReadOnlyDevice() throws Exception {
        ExternalTool.require("nbdinfo", "nbdcopy", "qemu-io");
        TlsCertificates certs = TlsCertificates.create(Files.createDirectories(dir.resolve("certs")));
        Path data = dir.resolve("data");
        Path socket = data.resolve("nbd.sock");
        StringWriter w = new StringWriter();
        Blksnapd d = start(w, "--data-dir", data.toString(), "--listen", "none",
                "--device", "pub=" + dir.resolve("pub.img") + ":8M",
                "--device", "secret=" + dir.resolve("secret.img") + ":8M",
                "--device", "ro0=" + dir.resolve("ro0.img") + ":4M:ro",
                "--tls", "require", "--tls-cert", certs.serverCert().toString(), "--tls-key", certs.serverKey().toString(),
                "--tls-ca", certs.ca().toString(), "--tls-verify-peer",
                "--allow", "secret=subject:" + TlsCertificates.CLIENT_SUBJECT, "--read-only", "blksnap-image0",
                "--param", "diff_storage_minimum=4096");
        try {
            assertThat(w.toString()).as("the URIs printed say TLS").contains("nbds+unix:///pub");
            Path control = data.resolve("control.sock");

            Result plain = ExternalTool.run(T, "nbdinfo", "nbd+unix:///pub?socket=" + socket);
            assertThat(plain.exitCode()).isNotZero();
            assertThat(plain.stderr()).contains("Operation not supported"); // libnbd 1.14's words for ERR_TLS_REQD

            Path in = dir.resolve("in.bin");
            byte[] bytes = new byte[8 << 20];
            new java.util.Random(7).nextBytes(bytes);
            Files.write(in, bytes);
            ExternalTool.run(T, "nbdcopy", in.toString(), tls(socket, "secret", certs.client())).assertSuccess();

            String id = CliRun.run(control, "snapshot", "create", "--device", "secret").line();
            assertThat(CliRun.run(control, "snapshot", "append-storage", "--id", id, "--file",
                    dir.resolve("ds").toString(), "--size", "8M").exitCode()).isZero();
            assertThat(CliRun.run(control, "snapshot", "take", "--id", id).exitCode()).isZero();

            Result mine = ExternalTool.run(T, "nbdinfo", "--list", tls(socket, "", certs.client())).assertSuccess();
            assertThat(mine.stdout()).contains("export=\"secret\"").contains("export=\"blksnap-image0\"")
                    .contains("export=\"pub\"");
            Result theirs = ExternalTool.run(T, "nbdinfo", "--list", tls(socket, "", certs.other())).assertSuccess();
            assertThat(theirs.stdout()).contains("export=\"pub\"").doesNotContain("secret").doesNotContain("image0");
            Result denied = ExternalTool.run(T, "nbdinfo", tls(socket, "blksnap-image0", certs.other()));
            assertThat(denied.exitCode()).isNotZero();
            assertThat(denied.stderr()).contains("No such file or directory for export: blksnap-image0");

            Path back = dir.resolve("back.bin");
            ExternalTool.run(T, "nbdcopy", tls(socket, "blksnap-image0", certs.client()), back.toString()).assertSuccess();
            assertThat(Files.readAllBytes(back)).isEqualTo(bytes);

            ExternalTool.run(T, "nbdinfo", "--is", "read-only", tls(socket, "ro0", certs.other())).assertSuccess();
            String creds = "tls-creds-x509,id=tls0,endpoint=client,dir=" + certs.client();
            Result write = ExternalTool.run(T, List.of("qemu-io", "--object", creds, "--image-opts",
                    "driver=nbd,path=" + socket + ",export=ro0,tls-creds=tls0,tls-hostname=localhost",
                    "-c", "write -P 1 0 4k"));
            // qemu opens a read-only export for writing with EACCES, before any write is sent
            assertThat(write.exitCode()).isNotZero();
            assertThat(write.stderr()).contains("Permission denied");
            ExternalTool.run(T, "nbdinfo", "--is", "read-only", tls(socket, "blksnap-image0", certs.client()))
                    .assertSuccess();
            assertThat(ExternalTool.run(T, "nbdinfo", "--is", "read-only", tls(socket, "pub", certs.client()))
                    .exitCode()).isEqualTo(2);
        } finally {
            d.daemon().close();
        }
    }

    @Test
    void aDeviceAddedReadOnlyAtRunTimeStaysReadOnlyAfterARestart() throws Exception {
        ExternalTool.require("nbdinfo");
        Path data = dir.resolve("data");
        Path socket = data.resolve("nbd.sock");
        String[] args = {"--data-dir", data.toString(), "--listen", "none", "--device", "w=" + dir.resolve("w.img") + ":1M"};
        Blksnapd d = start(new StringWriter(), args);
        try {
            CliRun added = CliRun.run(data.resolve("control.sock"), "device", "add", "late=" + dir.resolve("late.img") + ":1M:ro");
            assertThat(added.exitCode()).as(added.toString()).isZero();
            assertThat(added.out()).contains("read-only");
            ExternalTool.run(T, "nbdinfo", "--is", "read-only", "nbd+unix:///late?socket=" + socket).assertSuccess();
        } finally {
            d.daemon().close();
        }
        d = start(new StringWriter(), args);
        try {
            assertThat(CliRun.run(data.resolve("control.sock"), "device", "list").out())
                    .containsPattern("late 1048576 untracked .* added .*late.img read-only")
                    .doesNotContainPattern("w 1048576 .*read-only");
            ExternalTool.run(T, "nbdinfo", "--is", "read-only", "nbd+unix:///late?socket=" + socket).assertSuccess();
            assertThat(ExternalTool.run(T, "nbdinfo", "--is", "read-only", "nbd+unix:///w?socket=" + socket).exitCode())
                    .isEqualTo(2);
        } finally {
            d.daemon().close();
        }
    }

    @Test
    void tlsAndAllowComeFromTheConfigFileWithSemicolonsInSubjects() throws Exception {
        ExternalTool.require("nbdinfo");
        TlsCertificates certs = TlsCertificates.create(Files.createDirectories(dir.resolve("certs")));
        Path data = dir.resolve("data");
        Path cfg = dir.resolve("blksnapd.conf");
        Files.writeString(cfg, "data-dir=" + data + "\nlisten=none\ndevice=a=" + dir.resolve("a.img") + ":4M,b="
                + dir.resolve("b.img") + ":4M\ntls=on\ntls-cert=" + certs.serverCert() + "\ntls-key=" + certs.serverKey()
                + "\ntls-ca=" + certs.ca() + "\ntls-verify-peer=true\nallow=b=subject:CN=other;O=Example\n");
        StringWriter w = new StringWriter();
        Blksnapd d = start(w, "--config", cfg.toString());
        try {
            Path socket = data.resolve("nbd.sock");
            assertThat(ExternalTool.run(T, "nbdinfo", "--list", tls(socket, "", certs.other())).assertSuccess().stdout())
                    .contains("export=\"a\"").contains("export=\"b\"");
            assertThat(ExternalTool.run(T, "nbdinfo", "--list", tls(socket, "", certs.client())).assertSuccess().stdout())
                    .contains("export=\"a\"").doesNotContain("export=\"b\"");
            // tls=on: a plain client is served too, and sees only what has no allow-list
            assertThat(ExternalTool.run(T, "nbdinfo", "--list", "nbd+unix://?socket=" + socket).assertSuccess().stdout())
                    .contains("export=\"a\"").doesNotContain("export=\"b\"");
        } finally {
            d.daemon().close();
        }
    }

    @Test
    void preSharedKeysFromAPsktoolFileWithAnAllowListByIdentity() throws Exception {
        ExternalTool.require("nbdinfo", "qemu-img");
        String aliceKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        String bobKey = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
        Path keys = Files.writeString(dir.resolve("keys.psk"), "alice:" + aliceKey + "\nbob:" + bobKey + "\n");
        Path aliceDir = Files.createDirectories(dir.resolve("alice"));
        Files.writeString(aliceDir.resolve("keys.psk"), "alice:" + aliceKey + "\n");
        Path bobFile = Files.writeString(dir.resolve("bob.psk"), "bob:" + bobKey + "\n");
        Path data = dir.resolve("data");
        Path socket = data.resolve("nbd.sock");
        StringWriter w = new StringWriter();
        Blksnapd d = start(w, "--data-dir", data.toString(), "--listen", "none",
                "--device", "pub=" + dir.resolve("pub.img") + ":8M",
                "--device", "secret=" + dir.resolve("secret.img") + ":8M",
                "--tls", "require", "--tls-psk", keys.toString(), "--allow", "secret=psk:alice");
        try {
            assertThat(w.toString()).contains("nbds+unix:///pub");
            String alice = "nbds+unix://alice@/?socket=" + socket + "&tls-psk-file=" + aliceDir.resolve("keys.psk");
            String bob = "nbds+unix://bob@/?socket=" + socket + "&tls-psk-file=" + bobFile;
            assertThat(ExternalTool.run(T, "nbdinfo", "--list", alice).assertSuccess().stdout())
                    .contains("export=\"pub\"").contains("export=\"secret\"");
            assertThat(ExternalTool.run(T, "nbdinfo", "--list", bob).assertSuccess().stdout())
                    .contains("export=\"pub\"").doesNotContain("secret");
            assertThat(ExternalTool.run(T, "nbdinfo", "nbd+unix:///pub?socket=" + socket).exitCode()).isNotZero();
            String creds = "tls-creds-psk,id=tls0,endpoint=client,username=alice,dir=" + aliceDir;
            ExternalTool.run(T, List.of("qemu-img", "info", "--object", creds, "--image-opts",
                    "driver=nbd,path=" + socket + ",export=secret,tls-creds=tls0")).assertSuccess();
        } finally {
            d.daemon().close();
        }
    }

    @Test
    void badTlsAndAllowArgumentsStopTheStartSayingWhy() throws Exception {
        Path badKeys = Files.writeString(dir.resolve("bad.psk"), "alice:00ff\nbob 00ff\n");
        String[][] cases = {
            {"--tls", "on", "--tls-psk", badKeys.toString(), "--tls-cert", "c", "--tls-key", "k"},
            {"--tls", "on", "--tls-psk", badKeys.toString(), "--tls-ca", "c", "--tls-verify-peer"},
            {"--tls", "require", "--tls-psk", badKeys.toString()},
            {"--tls", "require", "--tls-psk", dir.resolve("nope.psk").toString()},
            {"--allow", "disk0=psk:"},
            {"--tls", "require"},
            {"--tls", "maybe"},
            {"--tls", "on", "--tls-cert", dir.resolve("nope.pem").toString(), "--tls-key", dir.resolve("nope.pem").toString()},
            {"--tls-verify-peer", "--tls", "on", "--tls-cert", "c", "--tls-key", "k"},
            {"--allow", "disk0"},
            {"--allow", "disk0=subject:not a dn"},
            {"--allow", "disk0=10.0.0.0/40"},
        };
        String[] expected = {
            "--tls-psk cannot be combined with --tls-cert or --tls-key",
            "--tls-ca and --tls-verify-peer are for X.509 client certificates",
            "PSK key file " + badKeys + " line 2: expected IDENTITY:HEXKEY",
            "PSK key file " + dir.resolve("nope.psk") + " cannot be read",
            "access rule 'psk:': the PSK identity is missing",
            "--tls require needs --tls-cert and --tls-key (X.509), or --tls-psk (pre-shared keys)",
            "--tls 'maybe' must be off, on or require",
            "cannot read certificate file " + dir.resolve("nope.pem"),
            "--tls-verify-peer needs --tls-ca",
            "--allow 'disk0' must be EXPORT=RULE",
            "access rule 'subject:not a dn': not a distinguished name",
            "prefix must be 0..32",
        };
        for (int i = 0; i < cases.length; i++) {
            StringWriter w = new StringWriter();
            List<String> args = new java.util.ArrayList<>(List.of("--data-dir", dir.resolve("d" + i).toString(),
                    "--listen", "none", "--device", "disk0=" + dir.resolve("d" + i + ".img") + ":1M"));
            args.addAll(List.of(cases[i]));
            Blksnapd d = new Blksnapd();
            int rc = d.execute(args.toArray(new String[0]), new PrintWriter(w), new PrintWriter(w), false);
            if (rc == 0) {
                d.daemon().close();
            }
            assertThat(rc).as(String.join(" ", cases[i]) + ": " + w).isIn(1, 64);
            assertThat(w.toString()).as(String.join(" ", cases[i])).contains(expected[i]);
        }
    }
}
