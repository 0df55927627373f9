package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.blksnap.nbd.NbdHandshakeDescriptor.*;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.Vector;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.ExternalTool.Result;
import org.bouncycastle.tls.AbstractTlsClient;
import org.bouncycastle.tls.BasicTlsPSKExternal;
import org.bouncycastle.tls.BasicTlsPSKIdentity;
import org.bouncycastle.tls.CipherSuite;
import org.bouncycastle.tls.PRFAlgorithm;
import org.bouncycastle.tls.PSKTlsClient;
import org.bouncycastle.tls.PskKeyExchangeMode;
import org.bouncycastle.tls.ProtocolVersion;
import org.bouncycastle.tls.TlsAuthentication;
import org.bouncycastle.tls.TlsClient;
import org.bouncycastle.tls.TlsClientProtocol;
import org.bouncycastle.tls.TlsUtils;
import org.bouncycastle.tls.crypto.TlsCrypto;
import org.bouncycastle.tls.crypto.impl.bc.BcTlsCrypto;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.LoggerFactory;

/**
 * NBD_OPT_STARTTLS with pre-shared keys (gnutls psktool key files) against the real gnutls clients:
 * libnbd's nbdinfo, nbdcopy and nbdsh ({@code tls-psk-file}, {@code tls-username}) and qemu-img and
 * qemu-io ({@code tls-creds-psk}), over Unix sockets and TCP; a wrong key and an unknown identity
 * refused with a log line and no export seen; plain clients refused under require; an allow-list by
 * identity. A raw client on Bouncy Castle's TLS API pins TLS 1.2 and TLS 1.3 in turn.
 */
@Tag("system")
class NbdTlsPskTest {
    static final Duration T = Duration.ofSeconds(60);
    static final long MiB = 1024 * 1024;

    @TempDir
    Path dir;
    TestExports exports;
    NbdServer server;
    Path socket;
    int port;
    /** The server's key file: alice and bob. */
    Path serverKeys;
    byte[] aliceKey;
    byte[] bobKey;
    /** Client key files: alice's and bob's right keys, alice with a wrong key, and an identity the server does not have. */
    Path alice;
    Path bob;
    Path aliceWrong;
    Path mallory;
    ListAppender<ILoggingEvent> logs;
    /** The version the raw client's last handshake settled on. */
    volatile ProtocolVersion negotiated;

    @BeforeEach
    void keys() throws IOException {
        SecureRandom random = new SecureRandom();
        aliceKey = new byte[32];
        bobKey = new byte[32];
        byte[] wrong = new byte[32];
        random.nextBytes(aliceKey);
        random.nextBytes(bobKey);
        random.nextBytes(wrong);
        serverKeys = Files.writeString(dir.resolve("server.psk"), line("alice", aliceKey) + line("bob", bobKey));
        alice = keyDir("alice", line("alice", aliceKey));
        bob = keyDir("bob", line("bob", bobKey));
        aliceWrong = keyDir("alice-wrong", line("alice", wrong));
        mallory = keyDir("mallory", line("mallory", aliceKey));
        logs = new ListAppender<>();
        logs.start();
        ((Logger) LoggerFactory.getLogger(NbdServer.class)).addAppender(logs);
    }

    static String line(String identity, byte[] key) {
        return identity + ":" + HexFormat.of().formatHex(key) + "\n";
    }

    /** A directory with keys.psk, as qemu's tls-creds-psk wants it; libnbd takes the file itself. */
    Path keyDir(String name, String content) throws IOException {
        Path d = Files.createDirectories(dir.resolve(name));
        Files.writeString(d.resolve("keys.psk"), content);
        return d;
    }

    void start(NbdTls.Mode mode) throws IOException {
        exports = new TestExports();
        exports.add(dir, "disk", 64 * MiB, false);
        exports.add(dir, "secret", 4 * MiB, false);
        server = new NbdServer(exports, NbdServer.Config.defaults(), NbdTls.fromPskFile(mode, serverKeys));
        socket = server.listenUnix(dir.resolve("nbd.sock"));
        port = server.listenTcp(0).getPort();
    }

    @AfterEach
    void stop() throws Exception {
        ((Logger) LoggerFactory.getLogger(NbdServer.class)).detachAppender(logs);
        if (server != null) {
            server.close();
        }
        if (exports != null) {
            exports.close();
        }
    }

    String unixPsk(String export, Path keyDir, String user) {
        return "nbds+unix://" + user + "@/" + export + "?socket=" + socket + "&tls-psk-file=" + keyDir.resolve("keys.psk");
    }

    String tcpPsk(String export, Path keyDir, String user) {
        return "nbds://" + user + "@localhost:" + port + "/" + export + "?tls-psk-file=" + keyDir.resolve("keys.psk");
    }

    String plain(String export) {
        return "nbd+unix:///" + export + "?socket=" + socket;
    }

    List<String> refusals() {
        return logs.list.stream().map(ILoggingEvent::getFormattedMessage).filter(m -> m.contains("refused: TLS-PSK"))
                .toList();
    }

    @Test
    void nbdinfoNegotiatesPskOverUnixAndTcpAndPlainClientsStillWorkInOnMode() throws IOException {
        ExternalTool.require("nbdinfo");
        start(NbdTls.Mode.ON);
        for (String uri : List.of(unixPsk("disk", alice, "alice"), tcpPsk("disk", bob, "bob"))) {
            Result r = ExternalTool.run(T, "nbdinfo", "--json", uri).assertSuccess();
            assertThat(r.stdout()).as(uri).contains("\"TLS\": true").contains("\"export-size\": " + 64 * MiB);
        }
        Result r = ExternalTool.run(T, "nbdinfo", "--json", plain("disk")).assertSuccess();
        assertThat(r.stdout()).contains("\"TLS\": false");
        assertThat(refusals()).isEmpty();
    }

    @Test
    void nbdcopyWritesAndReadsBackThroughPskOverUnixAndTcp() throws IOException {
        ExternalTool.require("nbdcopy");
        start(NbdTls.Mode.REQUIRE);
        byte[] data = new byte[(int) (48 * MiB)];
        new Random(13).nextBytes(data);
        Path in = dir.resolve("in.bin");
        Files.write(in, data);
        ExternalTool.run(T, "nbdcopy", in.toString(), unixPsk("disk", alice, "alice")).assertSuccess();
        Path out = dir.resolve("out.bin");
        ExternalTool.run(T, "nbdcopy", tcpPsk("disk", bob, "bob"), out.toString()).assertSuccess();
        byte[] back = Files.readAllBytes(out);
        assertThat(back.length).isEqualTo(64 * MiB);
        assertThat(Arrays.equals(back, 0, data.length, data, 0, data.length)).isTrue();
        assertThat(server.stats().get("disk").bytesWritten()).isEqualTo(data.length);
    }

    @Test
    void nbdshSeesTlsAndStructuredRepliesNegotiatedWithPsk() throws IOException {
        ExternalTool.require("nbdsh");
        start(NbdTls.Mode.REQUIRE);
        Result r = ExternalTool.run(T, "nbdsh", "-c", "h.set_uri_allow_local_file(True)", "-c",
                "h.connect_uri('" + unixPsk("disk", alice, "alice") + "')", "-c",
                "print('tls', h.get_tls_negotiated(), 'sr', h.get_structured_replies_negotiated());"
                        + "h.pwrite(b'p' * 4096, 8192, nbd.CMD_FLAG_FUA); print('read', h.pread(4096, 8192)[:3])")
                .assertSuccess();
        assertThat(r.stdout()).contains("tls True sr True").contains("read bytearray(b'ppp')");
    }

    @Test
    void qemuImgAndQemuIoUseTlsCredsPskWithTls13AndWithTls12() throws IOException {
        ExternalTool.require("qemu-img", "qemu-io");
        start(NbdTls.Mode.REQUIRE);
        String creds = "tls-creds-psk,id=tls0,endpoint=client,username=alice,dir=" + alice;
        String tcp = "driver=nbd,host=localhost,port=" + port + ",export=disk,tls-creds=tls0";
        Result io = ExternalTool.run(T, List.of("qemu-io", "--object", creds, "--image-opts", tcp,
                "-c", "write -P 0x5c 1M 2M", "-c", "read -P 0x5c 1M 2M", "-c", "flush")).assertSuccess();
        assertThat(io.stdout()).doesNotContain("Pattern verification failed");
        String unix = "driver=nbd,path=" + socket + ",export=disk,tls-creds=tls0";
        Result img = ExternalTool.run(T, List.of("qemu-img", "info", "--object", creds, "--image-opts", unix))
                .assertSuccess();
        assertThat(img.stdout()).contains("64 MiB");
        // gnutls without TLS 1.3: qemu adds +ECDHE-PSK:+DHE-PSK to the priority it is given
        String tls12 = creds + ",priority=NORMAL:-VERS-TLS1.3";
        Path copy = dir.resolve("copy.raw");
        ExternalTool.run(T, List.of("qemu-img", "convert", "--object", tls12, "--image-opts", tcp, "-O", "raw",
                copy.toString())).assertSuccess();
        byte[] back = Files.readAllBytes(copy);
        assertThat(back[(int) MiB]).isEqualTo((byte) 0x5c);
        assertThat(back[(int) (3 * MiB) - 1]).isEqualTo((byte) 0x5c);
        assertThat(back[(int) (3 * MiB)]).isZero();
    }

    @Test
    void aWrongKeyOrAnUnknownIdentityIsRefusedWithALogLineAndSeesNoExport() throws IOException {
        ExternalTool.require("nbdinfo", "qemu-img");
        start(NbdTls.Mode.ON);
        for (String uri : List.of(unixPsk("disk", aliceWrong, "alice"), tcpPsk("", aliceWrong, "alice"),
                unixPsk("disk", mallory, "mallory"))) {
            Result r = ExternalTool.run(T, "nbdinfo", "--list", uri);
            assertThat(r.exitCode()).as(r.describe()).isNotZero();
            assertThat(r.stdout()).as(r.describe()).doesNotContain("disk").doesNotContain("secret");
            // the handshake fails: gnutls reads the server's alert, or, when the server has already
            // closed the connection after sending it, fails writing its next record (CI saw both)
            assertThat(r.stderr()).as(r.describe()).containsAnyOf("gnutls_handshake: A TLS fatal alert has been received",
                    "gnutls_handshake: Error in the push function", "gnutls_handshake: Error in the pull function");
        }
        String creds = "tls-creds-psk,id=tls0,endpoint=client,username=alice,dir=" + aliceWrong;
        Result qemu = ExternalTool.run(T, List.of("qemu-img", "info", "--object", creds, "--image-opts",
                "driver=nbd,path=" + socket + ",export=disk,tls-creds=tls0"));
        assertThat(qemu.exitCode()).as(qemu.describe()).isNotZero();
        org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> server.connectionCount() == 0);
        assertThat(refusals()).as(logs.list.toString()).hasSize(4);
        assertThat(refusals().get(0)).contains("wrong key for identity 'alice'");
        assertThat(refusals().get(2)).contains("unknown identity 'mallory'").contains(serverKeys.toString());
        assertThat(refusals().get(3)).contains("wrong key for identity 'alice'");
        assertThat(server.stats().get("disk") == null ? 0 : server.stats().get("disk").connections()).isZero();
        ExternalTool.run(T, "nbdinfo", unixPsk("disk", alice, "alice")).assertSuccess();
    }

    @Test
    void requireModeRefusesPlainClients() throws IOException {
        ExternalTool.require("nbdinfo", "qemu-img");
        start(NbdTls.Mode.REQUIRE);
        Result info = ExternalTool.run(T, "nbdinfo", plain("disk"));
        assertThat(info.exitCode()).isNotZero();
        Result qemu = ExternalTool.run(T, "qemu-img", "info", plain("disk"));
        assertThat(qemu.exitCode()).isNotZero();
        assertThat(qemu.stderr()).as(qemu.describe()).contains("this server requires TLS");
    }

    @Test
    void anExportAllowedToOnePskIdentityIsInvisibleToOthers() throws IOException {
        ExternalTool.require("nbdinfo");
        start(NbdTls.Mode.REQUIRE);
        exports.access.put("secret", AccessList.parse(List.of("psk:alice")));
        Result mine = ExternalTool.run(T, "nbdinfo", "--list", unixPsk("", alice, "alice")).assertSuccess();
        assertThat(mine.stdout()).contains("export=\"disk\"").contains("export=\"secret\"");
        Result theirs = ExternalTool.run(T, "nbdinfo", "--list", tcpPsk("", bob, "bob")).assertSuccess();
        assertThat(theirs.stdout()).contains("export=\"disk\"").doesNotContain("secret");
        ExternalTool.run(T, "nbdinfo", unixPsk("secret", alice, "alice")).assertSuccess();
        Result denied = ExternalTool.run(T, "nbdinfo", unixPsk("secret", bob, "bob"));
        Result missing = ExternalTool.run(T, "nbdinfo", unixPsk("secrex", bob, "bob"));
        assertThat(denied.exitCode()).isNotZero();
        assertThat(denied.stderr().replace("secret", "NAME")).isEqualTo(missing.stderr().replace("secrex", "NAME"));
    }

    @Test
    void aRawClientNegotiatesTls12AndTls13AndSeesTheExports() throws Exception {
        start(NbdTls.Mode.REQUIRE);
        TlsCrypto crypto = new BcTlsCrypto(new SecureRandom());
        int[][] tls12Suites = {{CipherSuite.TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256},
                {CipherSuite.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256}, {CipherSuite.TLS_DHE_PSK_WITH_AES_256_GCM_SHA384},
                {CipherSuite.TLS_PSK_WITH_AES_128_GCM_SHA256}};
        for (int[] suites : tls12Suites) {
            TlsClient c = new PSKTlsClient(crypto, new BasicTlsPSKIdentity("bob", bobKey)) {
                @Override
                protected ProtocolVersion[] getSupportedVersions() {
                    return ProtocolVersion.TLSv12.only();
                }

                @Override
                protected int[] getSupportedCipherSuites() {
                    return suites;
                }

                @Override
                public void notifyServerVersion(ProtocolVersion v) throws IOException {
                    super.notifyServerVersion(v);
                    negotiated = v;
                }
            };
            assertThat(listOver(c)).as(Integer.toHexString(suites[0])).isEqualTo(ProtocolVersion.TLSv12);
        }
        // TLS 1.3 with an ECDHE exchange on top of the key (psk_dhe_ke, what gnutls offers)
        for (short mode : new short[] {PskKeyExchangeMode.psk_dhe_ke}) {
            TlsClient c = new AbstractTlsClient(crypto) {
                @Override
                protected ProtocolVersion[] getSupportedVersions() {
                    return ProtocolVersion.TLSv13.only();
                }

                @Override
                protected int[] getSupportedCipherSuites() {
                    return TlsUtils.getSupportedCipherSuites(getCrypto(), new int[] {CipherSuite.TLS_AES_128_GCM_SHA256});
                }

                @Override
                public short[] getPskKeyExchangeModes() {
                    return new short[] {mode};
                }

                @Override
                public Vector getExternalPSKs() {
                    Vector<Object> v = new Vector<>();
                    v.add(new BasicTlsPSKExternal("alice".getBytes(StandardCharsets.UTF_8),
                            getCrypto().createSecret(aliceKey), PRFAlgorithm.tls13_hkdf_sha256));
                    return v;
                }

                @Override
                public TlsAuthentication getAuthentication() {
                    throw new IllegalStateException("a PSK handshake asks for no server certificate");
                }

                @Override
                public void notifyServerVersion(ProtocolVersion v) throws IOException {
                    super.notifyServerVersion(v);
                    negotiated = v;
                }
            };
            assertThat(listOver(c)).as("mode " + mode).isEqualTo(ProtocolVersion.TLSv13);
        }
        // A wrong key under TLS 1.2: the client's Finished does not decrypt
        byte[] wrong = bobKey.clone();
        wrong[0] ^= 1;
        TlsClient c = new PSKTlsClient(crypto, new BasicTlsPSKIdentity("bob", wrong)) {
            @Override
            protected ProtocolVersion[] getSupportedVersions() {
                return ProtocolVersion.TLSv12.only();
            }
        };
        assertThatThrownBy(() -> listOver(c)).isInstanceOf(IOException.class);
        org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> refusals().size() == 1);
        assertThat(refusals().get(0)).contains("wrong key for identity 'bob' (bad_record_mac");
    }

    /** STARTTLS, the TLS handshake with {@code client}, then LIST: two exports. Returns the TLS version. */
    ProtocolVersion listOver(TlsClient client) throws IOException {
        try (Socket s = new Socket("127.0.0.1", port)) {
            s.setSoTimeout(30_000);
            DataInputStream in = new DataInputStream(s.getInputStream());
            DataOutputStream out = new DataOutputStream(s.getOutputStream());
            assertThat(in.readLong()).isEqualTo(NBDMAGIC);
            assertThat(in.readLong()).isEqualTo(IHAVEOPT);
            in.readShort();
            out.writeInt(CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES);
            option(out, OPT_STARTTLS);
            assertThat(reply(in, OPT_STARTTLS)).isEqualTo(REP_ACK);
            TlsClientProtocol tls = new TlsClientProtocol(s.getInputStream(), s.getOutputStream());
            tls.connect(client);
            DataInputStream sin = new DataInputStream(tls.getInputStream());
            DataOutputStream sout = new DataOutputStream(tls.getOutputStream());
            option(sout, OPT_LIST);
            int servers = 0;
            int t;
            while ((t = reply(sin, OPT_LIST)) == REP_SERVER) {
                servers++;
            }
            assertThat(t).isEqualTo(REP_ACK);
            assertThat(servers).isEqualTo(2);
            option(sout, OPT_ABORT);
            assertThat(reply(sin, OPT_ABORT)).isEqualTo(REP_ACK);
            tls.close();
            return negotiated;
        }
    }

    static void option(DataOutputStream out, int option) throws IOException {
        out.writeLong(IHAVEOPT);
        out.writeInt(option);
        out.writeInt(0);
        out.flush();
    }

    static int reply(DataInputStream in, int option) throws IOException {
        assertThat(in.readLong()).isEqualTo(OPTION_REPLY_MAGIC);
        assertThat(in.readInt()).isEqualTo(option);
        int type = in.readInt();
        in.skipNBytes(Integer.toUnsignedLong(in.readInt()));
        return type;
    }
}
