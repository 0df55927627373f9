package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.nbd.NbdHandshakeDescriptor.*;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.ExternalTool.Result;
import org.blksnap.testing.TlsCertificates;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * NBD_OPT_STARTTLS and access control per export, against the real clients (nbdinfo, nbdcopy,
 * nbdsh, qemu-img, qemu-io) with certificates made by openssl, over TCP and Unix sockets; the
 * protocol corners (a second STARTTLS, options before TLS in require mode) with a raw client that
 * layers JSSE on its socket after STARTTLS.
 */
@Tag("system")
class NbdTlsTest {
    static final Duration T = Duration.ofSeconds(60);
    static final long MiB = 1024 * 1024;

    @TempDir
    static Path certDir;
    static TlsCertificates certs;

    @TempDir
    Path dir;
    TestExports exports;
    NbdServer server;
    Path socket;
    int port;

    @BeforeAll
    static void makeCertificates() throws IOException {
        certs = TlsCertificates.create(certDir);
    }

    void start(NbdTls.Mode mode, boolean verifyPeer) throws IOException {
        exports = new TestExports();
        exports.add(dir, "disk", 64 * MiB, false);
        exports.add(dir, "secret", 4 * MiB, false);
        NbdTls tls = NbdTls.fromPem(mode, certs.serverCert(), certs.serverKey(), certs.ca(), verifyPeer);
        server = new NbdServer(exports, NbdServer.Config.defaults(), tls);
        socket = server.listenUnix(dir.resolve("nbd.sock"));
        port = server.listenTcp(0).getPort();
    }

    @AfterEach
    void stop() throws Exception {
        if (server != null) {
            server.close();
        }
        if (exports != null) {
            exports.close();
        }
    }

    String unixTls(String export, Path clientDir) {
        return "nbds+unix:///" + export + "?socket=" + socket + "&tls-certificates=" + clientDir;
    }

    String tcpTls(String export, Path clientDir) {
        return "nbds://localhost:" + port + "/" + export + "?tls-certificates=" + clientDir;
    }

    String plain(String export) {
        return "nbd+unix:///" + export + "?socket=" + socket;
    }

    @Test
    void nbdinfoNegotiatesTlsOverUnixAndTcpAndPlainClientsStillWorkInOnMode() throws IOException {
        ExternalTool.require("nbdinfo");
        start(NbdTls.Mode.ON, false);
        for (String uri : List.of(unixTls("disk", certs.client()), tcpTls("disk", certs.client()))) {
            Result r = ExternalTool.run(T, "nbdinfo", "--json", uri).assertSuccess();
            assertThat(r.stdout()).as(uri).contains("\"TLS\": true").contains("\"export-size\": " + 64 * MiB);
        }
        Result r = ExternalTool.run(T, "nbdinfo", "--json", plain("disk")).assertSuccess();
        assertThat(r.stdout()).contains("\"TLS\": false");
    }

    @Test
    void nbdcopyWritesAndReadsBackThroughTlsOverUnixAndTcp() throws IOException {
        ExternalTool.require("nbdcopy");
        start(NbdTls.Mode.REQUIRE, false);
        byte[] data = new byte[(int) (48 * MiB)];
        new Random(13).nextBytes(data);
        Path in = dir.resolve("in.bin");
        Files.write(in, data);
        ExternalTool.run(T, "nbdcopy", in.toString(), unixTls("disk", certs.client())).assertSuccess();
        Path out = dir.resolve("out.bin");
        ExternalTool.run(T, "nbdcopy", tcpTls("disk", certs.client()), out.toString()).assertSuccess();
        byte[] back = Files.readAllBytes(out);
        assertThat(back.length).isEqualTo(64 * MiB);
        assertThat(java.util.Arrays.equals(back, 0, data.length, data, 0, data.length)).isTrue();
        assertThat(server.stats().get("disk").bytesWritten()).isEqualTo(data.length);
    }

    @Test
    void nbdshSeesTlsNegotiatedAndStructuredRepliesAfterStartTls() throws IOException {
        ExternalTool.require("nbdsh");
        start(NbdTls.Mode.REQUIRE, false);
        Result r = ExternalTool.run(T, "nbdsh", "-c", "h.set_uri_allow_local_file(True)", "-c",
                "h.connect_uri('" + unixTls("disk", certs.client()) + "')", "-c",
                "print('tls', h.get_tls_negotiated(), 'sr', h.get_structured_replies_negotiated());"
                        + "h.pwrite(b'x' * 4096, 8192, nbd.CMD_FLAG_FUA); print('read', h.pread(4096, 8192)[:3])")
                .assertSuccess();
        assertThat(r.stdout()).contains("tls True sr True").contains("read bytearray(b'xxx')");
    }

    @Test
    void requireModeRefusesPlainClientsWithAClearMessage() throws IOException {
        ExternalTool.require("nbdinfo", "qemu-img");
        start(NbdTls.Mode.REQUIRE, false);
        // libnbd 1.14 turns NBD_REP_ERR_TLS_REQD into ENOTSUP and does not print the server's message
        Result info = ExternalTool.run(T, "nbdinfo", plain("disk"));
        assertThat(info.exitCode()).isNotZero();
        assertThat(info.stderr()).contains("Operation not supported");
        Result qemu = ExternalTool.run(T, "qemu-img", "info", plain("disk"));
        assertThat(qemu.exitCode()).isNotZero();
        assertThat(qemu.stderr()).as(qemu.describe()).contains("this server requires TLS");
        org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> server.connectionCount() == 0);
    }

    @Test
    void qemuImgAndQemuIoUseTlsCredsX509() throws IOException {
        ExternalTool.require("qemu-img", "qemu-io");
        start(NbdTls.Mode.REQUIRE, true);
        String creds = "tls-creds-x509,id=tls0,endpoint=client,dir=" + certs.client();
        String tcp = "driver=nbd,host=localhost,port=" + port + ",export=disk,tls-creds=tls0";
        Result io = ExternalTool.run(T, List.of("qemu-io", "--object", creds, "--image-opts", tcp,
                "-c", "write -P 0x5c 1M 2M", "-c", "read -P 0x5c 1M 2M", "-c", "flush")).assertSuccess();
        assertThat(io.stdout()).doesNotContain("Pattern verification failed");
        String unix = "driver=nbd,path=" + socket + ",export=disk,tls-creds=tls0,tls-hostname=localhost";
        Result img = ExternalTool.run(T, List.of("qemu-img", "info", "--object", creds, "--image-opts", unix))
                .assertSuccess();
        assertThat(img.stdout()).contains("64 MiB");
        Path copy = dir.resolve("copy.raw");
        ExternalTool.run(T, List.of("qemu-img", "convert", "--object", creds, "--image-opts", tcp, "-O", "raw",
                copy.toString())).assertSuccess();
        byte[] back = Files.readAllBytes(copy);
        assertThat(back[(int) MiB]).isEqualTo((byte) 0x5c);
        assertThat(back[(int) (3 * MiB) - 1]).isEqualTo((byte) 0x5c);
        assertThat(back[(int) (3 * MiB)]).isZero();
    }

    @Test
    void verifyPeerRefusesAClientSignedByAnotherCaAndOneWithoutACertificate() throws IOException {
        ExternalTool.require("nbdinfo");
        start(NbdTls.Mode.REQUIRE, true);
        for (Path client : List.of(certs.rogue(), certs.noCert())) {
            Result r = ExternalTool.run(T, "nbdinfo", tcpTls("disk", client));
            assertThat(r.exitCode()).as(r.describe()).isNotZero();
            assertThat(r.stderr()).as(r.describe()).containsIgnoringCase("tls");
        }
        ExternalTool.run(T, "nbdinfo", tcpTls("disk", certs.client())).assertSuccess();
    }

    @Test
    void anExportAllowedToOneCertificateSubjectIsInvisibleToOthers() throws IOException {
        ExternalTool.require("nbdinfo");
        start(NbdTls.Mode.REQUIRE, true);
        exports.access.put("secret", AccessList.parse(List.of("subject:" + TlsCertificates.CLIENT_SUBJECT)));

        Result mine = ExternalTool.run(T, "nbdinfo", "--list", unixTls("", certs.client())).assertSuccess();
        assertThat(mine.stdout()).contains("export=\"disk\"").contains("export=\"secret\"");
        Result theirs = ExternalTool.run(T, "nbdinfo", "--list", unixTls("", certs.other())).assertSuccess();
        assertThat(theirs.stdout()).contains("export=\"disk\"").doesNotContain("secret");

        ExternalTool.run(T, "nbdinfo", unixTls("secret", certs.client())).assertSuccess();
        Result denied = ExternalTool.run(T, "nbdinfo", unixTls("secret", certs.other()));
        Result missing = ExternalTool.run(T, "nbdinfo", unixTls("secrex", certs.other()));
        assertThat(denied.exitCode()).isNotZero();
        // Word for word what a name that does not exist gets.
        assertThat(denied.stderr().replace("secret", "NAME")).isEqualTo(missing.stderr().replace("secrex", "NAME"));
        // libnbd 1.14 prints ERR_UNKNOWN as ENOENT, without the server's message ("no export named 'secret'")
        assertThat(denied.stderr()).contains("No such file or directory for export: secret");
    }

    @Test
    void addressAndUnixUserRulesDecideWithoutTls() throws Exception {
        ExternalTool.require("nbdinfo");
        start(NbdTls.Mode.OFF, false);
        String me = System.getProperty("user.name");
        exports.access.put("secret", AccessList.parse(List.of("10.0.0.0/8", "user:" + me)));
        String tcp = "nbd://127.0.0.1:" + port + "/secret";
        assertThat(ExternalTool.run(T, "nbdinfo", tcp).exitCode()).isNotZero();
        assertThat(ExternalTool.run(T, "nbdinfo", "--list", "nbd://127.0.0.1:" + port).stdout()).doesNotContain("secret");
        ExternalTool.run(T, "nbdinfo", plain("secret")).assertSuccess();

        exports.access.put("secret", AccessList.parse(List.of("addr:127.0.0.0/24", "user:nobody-at-all")));
        ExternalTool.run(T, "nbdinfo", tcp).assertSuccess();
        assertThat(ExternalTool.run(T, "nbdinfo", plain("secret")).exitCode()).isNotZero();
    }

    @Test
    void aSecondStartTlsIsRefusedAndRequireModeAnswersTlsReqdUntilTls() throws Exception {
        start(NbdTls.Mode.REQUIRE, false);
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 10_000);
            s.setSoTimeout(30_000);
            Raw raw = new Raw(s.getInputStream(), s.getOutputStream());
            raw.greet();
            raw.option(OPT_LIST, new byte[0]);
            assertThat(raw.reply(OPT_LIST)).isEqualTo(REP_ERR_TLS_REQD);
            raw.option(OPT_STRUCTURED_REPLY, new byte[0]);
            assertThat(raw.reply(OPT_STRUCTURED_REPLY)).isEqualTo(REP_ERR_TLS_REQD);
            raw.option(OPT_STARTTLS, new byte[0]);
            assertThat(raw.reply(OPT_STARTTLS)).isEqualTo(REP_ACK);

            SSLSocket tls = (SSLSocket) clientContext().getSocketFactory().createSocket(s, "localhost", port, true);
            tls.startHandshake();
            assertThat(tls.getSession().getProtocol()).isEqualTo("TLSv1.3");
            Raw secure = new Raw(tls.getInputStream(), tls.getOutputStream());
            secure.option(OPT_STARTTLS, new byte[0]);
            assertThat(secure.reply(OPT_STARTTLS)).isEqualTo(REP_ERR_INVALID);
            secure.option(OPT_LIST, new byte[0]);
            List<Integer> types = new ArrayList<>();
            int t;
            while ((t = secure.reply(OPT_LIST)) == REP_SERVER) {
                types.add(t);
            }
            assertThat(t).isEqualTo(REP_ACK);
            assertThat(types).hasSize(2);
            secure.option(OPT_ABORT, new byte[0]);
            assertThat(secure.reply(OPT_ABORT)).isEqualTo(REP_ACK);
        }
    }

    @Test
    void exportNameBeforeTlsInRequireModeHangsUpAndOffModeAnswersStartTlsUnsupported() throws Exception {
        start(NbdTls.Mode.REQUIRE, false);
        try (Socket s = new Socket("127.0.0.1", port)) {
            s.setSoTimeout(30_000);
            Raw raw = new Raw(s.getInputStream(), s.getOutputStream());
            raw.greet();
            raw.option(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            assertThat(s.getInputStream().read()).isEqualTo(-1);
        }
        server.close();
        server = new NbdServer(exports);
        int plainPort = server.listenTcp(0).getPort();
        try (Socket s = new Socket("127.0.0.1", plainPort)) {
            s.setSoTimeout(30_000);
            Raw raw = new Raw(s.getInputStream(), s.getOutputStream());
            raw.greet();
            raw.option(OPT_STARTTLS, new byte[0]);
            assertThat(raw.reply(OPT_STARTTLS)).isEqualTo(REP_ERR_UNSUP);
        }
    }

    @Test
    void privateKeysInThePemFormsOpensslAndCerttoolWriteAreRead() throws Exception {
        Path keys = Files.createDirectories(dir.resolve("keys"));
        ExternalTool.run(T, java.util.Map.of(), keys, List.of("bash", "-c", "set -e;"
                + " openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa8.pem 2>/dev/null;"
                + " openssl genrsa -traditional -out rsa1.pem 2048 2>/dev/null;"
                + " openssl ecparam -name secp384r1 -genkey -noout -out ec1.pem;"
                + " openssl pkcs8 -topk8 -nocrypt -in ec1.pem -out ec8.pem;"
                + " openssl genpkey -algorithm ED25519 -out ed.pem;"
                + " openssl pkcs8 -topk8 -passout pass:x -in rsa1.pem -out enc.pem")).assertSuccess();
        assertThat(PemFiles.privateKey(keys.resolve("rsa8.pem")).getAlgorithm()).isEqualTo("RSA");
        assertThat(PemFiles.privateKey(keys.resolve("rsa1.pem")).getAlgorithm()).isEqualTo("RSA");
        var sec1 = (java.security.interfaces.ECPrivateKey) PemFiles.privateKey(keys.resolve("ec1.pem"));
        var pkcs8 = (java.security.interfaces.ECPrivateKey) PemFiles.privateKey(keys.resolve("ec8.pem"));
        assertThat(sec1.getS()).isEqualTo(pkcs8.getS());
        assertThat(sec1.getParams().getCurve()).isEqualTo(pkcs8.getParams().getCurve());
        assertThat(PemFiles.privateKey(keys.resolve("ed.pem")).getAlgorithm()).isIn("EdDSA", "Ed25519");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> PemFiles.privateKey(keys.resolve("enc.pem")))
                .hasMessageContaining("is encrypted");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> PemFiles.privateKey(certs.ca()))
                .hasMessageContaining("holds no PEM private key");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> NbdTls.fromPem(NbdTls.Mode.ON, certs.serverCert(),
                keys.resolve("rsa8.pem"), null, false)).isInstanceOf(IOException.class);
    }

    static SSLContext clientContext() throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        int i = 0;
        for (var c : PemFiles.certificates(certs.ca())) {
            trust.setCertificateEntry("ca" + i++, c);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }

    /** A blocking raw client over any stream: options and their reply types (payloads skipped). */
    private record Raw(DataInputStream in, DataOutputStream out) {
        Raw(InputStream in, OutputStream out) {
            this(new DataInputStream(in), new DataOutputStream(out));
        }

        void greet() throws IOException {
            assertThat(in.readLong()).isEqualTo(NBDMAGIC);
            assertThat(in.readLong()).isEqualTo(IHAVEOPT);
            in.readShort();
            out.writeInt(CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES);
            out.flush();
        }

        void option(int option, byte[] data) throws IOException {
            out.writeLong(IHAVEOPT);
            out.writeInt(option);
            out.writeInt(data.length);
            out.write(data);
            out.flush();
        }

        int reply(int option) throws IOException {
            long magic = in.readLong();
            if (magic != OPTION_REPLY_MAGIC) {
                throw new EOFException("bad reply magic " + Long.toHexString(magic));
            }
            assertThat(in.readInt()).isEqualTo(option);
            int type = in.readInt();
            in.skipNBytes(Integer.toUnsignedLong(in.readInt()));
            return type;
        }
    }
}
