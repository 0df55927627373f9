package org.blksnap.nbd;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.Vector;
import java.util.concurrent.locks.ReentrantLock;
import javax.security.auth.x500.X500Principal;
import org.bouncycastle.tls.AlertDescription;
import org.bouncycastle.tls.BasicTlsPSKExternal;
import org.bouncycastle.tls.CipherSuite;
import org.bouncycastle.tls.PRFAlgorithm;
import org.bouncycastle.tls.PSKTlsServer;
import org.bouncycastle.tls.ProtocolVersion;
import org.bouncycastle.tls.PskIdentity;
import org.bouncycastle.tls.PskKeyExchangeMode;
import org.bouncycastle.tls.TlsCredentials;
import org.bouncycastle.tls.TlsFatalAlert;
import org.bouncycastle.tls.TlsPSKExternal;
import org.bouncycastle.tls.TlsPSKIdentityManager;
import org.bouncycastle.tls.TlsServerProtocol;
import org.bouncycastle.tls.TlsUtils;
import org.bouncycastle.tls.crypto.TlsCrypto;

/**
 * TLS with pre-shared keys over a connection's byte stream after {@code NBD_OPT_STARTTLS}: Bouncy
 * Castle's {@link TlsServerProtocol} in its non-blocking mode (bytes are offered to it and taken
 * from it; this class does the socket I/O), since JSSE has no PSK cipher suites.
 *
 * <p>Threads: reads come from one thread at a time; writes are serialized by {@link #writeLock}.
 * The protocol object is not thread-safe, so every call into it holds {@link #protocolLock}, only
 * for as long as the call (never across socket I/O). Lock order: {@code writeLock}, then
 * {@code protocolLock}. The reader takes {@code writeLock} only when the protocol has records for
 * the peer after a read (an alert, a key update), so a writer blocked on a client that does not
 * read holds the reader only then.
 *
 * <p>Memory: heap buffers of about 18 KiB for received records, 64 KiB of plaintext and 66 KiB of
 * records going out, and the protocol's queues, which hold at most one read's worth of plaintext
 * (the reader offers more records only once the plaintext is taken) and one write's worth of
 * records; freed with the connection by the GC.
 */
final class PskTlsLayer implements TlsLayer {
    /** Received bytes offered to the protocol at a time: about one record. */
    private static final int RAW_READ_BYTES = (16 << 10) + 2048;
    /** Plaintext handed to the protocol at a time: four records, then the records go out in one write. */
    private static final int PLAIN_WRITE_BYTES = 64 << 10;

    /**
     * Offered in this order; the client's preference decides (gnutls puts TLS 1.3, then ECDHE-PSK
     * first). TLS 1.3: only the SHA-256 suite, because an external PSK is bound to SHA-256 (gnutls'
     * default) and Bouncy Castle picks the TLS 1.3 suite before it looks at the PSK: with
     * TLS_AES_256_GCM_SHA384, which gnutls prefers, the key schedules differ and the client fails
     * with "Decryption has failed". No ChaCha20-Poly1305: Bouncy Castle's JCA crypto does not run it
     * on the JDK's providers (AES-GCM there uses AES-NI).
     */
    private static final int[] SUITES = {
            CipherSuite.TLS_AES_128_GCM_SHA256,
            CipherSuite.TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256,
            CipherSuite.TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384,
            CipherSuite.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
            CipherSuite.TLS_DHE_PSK_WITH_AES_128_GCM_SHA256,
            CipherSuite.TLS_DHE_PSK_WITH_AES_256_GCM_SHA384,
            CipherSuite.TLS_PSK_WITH_AES_128_GCM_SHA256,
            CipherSuite.TLS_PSK_WITH_AES_256_GCM_SHA384,
    };

    private final Server server;
    private final ByteChannel raw;
    private final TlsServerProtocol protocol = new TlsServerProtocol();
    private final ReentrantLock protocolLock = new ReentrantLock();
    private final ReentrantLock writeLock = new ReentrantLock();
    /** Bytes of the client's handshake read before this layer existed; consumed by {@link #handshake}. */
    private ByteBuffer early;
    /** Reader only. */
    private final ByteBuffer rawIn = ByteBuffer.allocate(RAW_READ_BYTES);
    private boolean inboundDone;
    /** Guarded by {@link #writeLock}. */
    private final byte[] plainOut = new byte[PLAIN_WRITE_BYTES];
    /** Guarded by {@link #writeLock}; grows if the protocol hands out more at once. */
    private ByteBuffer netOut = ByteBuffer.allocate(PLAIN_WRITE_BYTES + (2 << 10));

    PskTlsLayer(Server server, ByteChannel raw, ByteBuffer received) {
        this.server = server;
        this.raw = raw;
        this.early = ByteBuffer.allocate(received.remaining()).put(received).flip();
    }

    /** The cipher suites of {@link #SUITES} that {@code crypto} can run. */
    static int[] cipherSuites(TlsCrypto crypto) {
        return TlsUtils.getSupportedCipherSuites(crypto, SUITES);
    }

    @Override
    public void handshake() throws IOException {
        try {
            call(() -> protocol.accept(server));
            if (early.hasRemaining()) {
                byte[] b = new byte[early.remaining()];
                early.get(b);
                offer(b, b.length);
            }
            early = null;
            while (protocol.isHandshaking()) {
                sendPending();
                rawIn.clear();
                if (raw.read(rawIn) < 0) {
                    throw new EOFException("the client closed the connection during the TLS handshake");
                }
                offer(rawIn.array(), rawIn.position());
            }
            sendPending();
            if (!server.completed) {
                throw new EOFException("the client ended the TLS session during its handshake");
            }
        } catch (IOException e) {
            sendLastRecords();
            throw server.explain(e);
        }
    }

    @Override
    public int read(ByteBuffer dst) throws IOException {
        if (!dst.hasRemaining()) {
            return 0;
        }
        while (true) {
            protocolLock.lock();
            try {
                int available = protocol.getAvailableInputBytes();
                if (available > 0) {
                    return protocol.readInput(dst, Math.min(available, dst.remaining()));
                }
            } finally {
                protocolLock.unlock();
            }
            if (inboundDone) {
                return -1;
            }
            rawIn.clear();
            int n = raw.read(rawIn);
            if (n < 0) {
                inboundDone = true;
                continue;
            }
            offer(rawIn.array(), n);
            if (pendingBytes() > 0) {
                sendPending();
            }
            protocolLock.lock();
            try {
                if (protocol.isClosed()) {
                    inboundDone = true; // close_notify: what was decrypted before it is still handed out
                }
            } finally {
                protocolLock.unlock();
            }
        }
    }

    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
        writeLock.lock();
        try {
            long sent = 0;
            for (int i = offset; i < offset + length; i++) {
                ByteBuffer src = srcs[i];
                while (src.hasRemaining()) {
                    int n = Math.min(src.remaining(), plainOut.length);
                    src.get(plainOut, 0, n);
                    protocolLock.lock();
                    try {
                        protocol.writeApplicationData(plainOut, 0, n);
                        takeOutput();
                    } finally {
                        protocolLock.unlock();
                    }
                    flushOut();
                    sent += n;
                }
            }
            return sent;
        } finally {
            writeLock.unlock();
        }
    }

    @Override
    public void closeQuietly() {
        if (!writeLock.tryLock()) {
            return;
        }
        try {
            ByteBuffer notify;
            protocolLock.lock();
            try {
                if (protocol.isClosed()) {
                    return;
                }
                protocol.close();
                notify = ByteBuffer.allocate(protocol.getAvailableOutputBytes());
                protocol.readOutput(notify, notify.remaining());
            } finally {
                protocolLock.unlock();
            }
            notify.flip();
            TlsLayer.sendLastWords(raw, notify);
        } catch (IOException | RuntimeException e) {
            // The connection is being closed anyway.
        } finally {
            writeLock.unlock();
        }
    }

    @Override
    public X500Principal peerSubject() {
        return null;
    }

    @Override
    public String pskIdentity() {
        return server.completed ? server.identity : null;
    }

    @Override
    public String describe() {
        return server.describe();
    }

    private interface ProtocolCall {
        void run() throws IOException;
    }

    private void call(ProtocolCall c) throws IOException {
        protocolLock.lock();
        try {
            c.run();
        } finally {
            protocolLock.unlock();
        }
    }

    private void offer(byte[] bytes, int length) throws IOException {
        call(() -> protocol.offerInput(bytes, 0, length));
    }

    private int pendingBytes() {
        protocolLock.lock();
        try {
            return protocol.getAvailableOutputBytes();
        } finally {
            protocolLock.unlock();
        }
    }

    /** Sends the records the protocol has for the peer (handshake messages, alerts). */
    private void sendPending() throws IOException {
        writeLock.lock();
        try {
            protocolLock.lock();
            try {
                takeOutput();
            } finally {
                protocolLock.unlock();
            }
            flushOut();
        } finally {
            writeLock.unlock();
        }
    }

    /** After a failed handshake: the alert the protocol queued, sent without waiting for a client that does not read. */
    private void sendLastRecords() {
        if (!writeLock.tryLock()) {
            return;
        }
        try {
            protocolLock.lock();
            try {
                takeOutput();
            } finally {
                protocolLock.unlock();
            }
            netOut.flip();
            TlsLayer.sendLastWords(raw, netOut);
        } finally {
            netOut.clear();
            writeLock.unlock();
        }
    }

    /** Moves the protocol's outgoing records into {@link #netOut}; holds both locks. */
    private void takeOutput() {
        int n = protocol.getAvailableOutputBytes();
        if (n > netOut.remaining()) {
            netOut = ByteBuffer.allocate(netOut.position() + n).put(netOut.flip());
        }
        if (n > 0) {
            protocol.readOutput(netOut, n);
        }
    }

    /** Writes {@link #netOut} to the socket; holds {@link #writeLock}. */
    private void flushOut() throws IOException {
        netOut.flip();
        try {
            while (netOut.hasRemaining()) {
                raw.write(netOut);
            }
        } finally {
            netOut.clear();
        }
    }

    /**
     * The server side of one handshake: the keys of the file, TLS 1.3 and 1.2, and a record of which
     * identity the client offered, so a failure can say whether the identity was unknown or the key
     * wrong. Used by one connection's handshake; its fields are written during the handshake and
     * read after it by the same thread, or by others after the volatile {@link #completed}.
     */
    static final class Server extends PSKTlsServer {
        private final PskKeyFile keys;
        /** The identity the client offered (the last one looked up), or null. */
        private String identity;
        /** Whether that identity is in the key file. */
        private boolean known;
        private volatile boolean completed;

        Server(TlsCrypto crypto, PskKeyFile keys) {
            super(crypto, new Keys(keys));
            // The identity manager reports lookups to this server, which cannot be named before super() returns.
            ((Keys) pskIdentityManager).server = this;
            this.keys = keys;
        }

        /** TLS 1.2: looks the identity up (unknown: the protocol answers unknown_psk_identity). */
        private static final class Keys implements TlsPSKIdentityManager {
            private final PskKeyFile keys;
            private Server server;

            Keys(PskKeyFile keys) {
                this.keys = keys;
            }

            @Override
            public byte[] getHint() {
                return null;
            }

            @Override
            public byte[] getPSK(byte[] identity) {
                return server.lookUp(identity);
            }
        }

        private byte[] lookUp(byte[] identityBytes) {
            identity = new String(identityBytes, StandardCharsets.UTF_8);
            byte[] key = keys.key(identity);
            known = key != null;
            return key;
        }

        /** TLS 1.3: the first offered identity that the file has; gnutls offers one. */
        @Override
        public TlsPSKExternal getExternalPSK(Vector identities) {
            for (Object o : identities) {
                byte[] id = ((PskIdentity) o).getIdentity();
                byte[] key = lookUp(id);
                if (key != null) {
                    // gnutls and OpenSSL bind external PSKs to SHA-256 unless told otherwise
                    return new BasicTlsPSKExternal(id, getCrypto().createSecret(key), PRFAlgorithm.tls13_hkdf_sha256);
                }
            }
            return null;
        }

        /**
         * TLS 1.3: the key with an (EC)DHE exchange on top, for forward secrecy; Bouncy Castle's server
         * does not implement psk_ke (the key alone), and gnutls offers psk_dhe_ke whenever ECDHE-PSK
         * or DHE-PSK is enabled, as libnbd and qemu do.
         */
        @Override
        public short[] getPskKeyExchangeModes() {
            return new short[] {PskKeyExchangeMode.psk_dhe_ke};
        }

        @Override
        protected ProtocolVersion[] getSupportedVersions() {
            return ProtocolVersion.TLSv13.downTo(ProtocolVersion.TLSv12);
        }

        @Override
        protected int[] getSupportedCipherSuites() {
            return cipherSuites(getCrypto());
        }

        @Override
        public TlsCredentials getCredentials() throws IOException {
            if (TlsUtils.isTLSv13(context)) {
                // Reached only when no offered PSK was accepted: there is nothing else to authenticate with.
                // Bouncy Castle goes on without a PSK whose binder does not verify; RFC 8446 4.2.11 asks
                // for decrypt_error then.
                if (identity != null && known) {
                    throw new TlsFatalAlert(AlertDescription.decrypt_error, "the PSK binder of '" + identity
                            + "' does not verify");
                }
                throw new TlsFatalAlert(AlertDescription.unknown_psk_identity, "no known PSK identity offered");
            }
            return super.getCredentials();
        }

        @Override
        public void notifyHandshakeComplete() throws IOException {
            super.notifyHandshakeComplete();
            completed = true;
        }

        String describe() {
            try {
                return context.getServerVersion() + " PSK cipher suite 0x"
                        + Integer.toHexString(context.getSecurityParametersConnection().getCipherSuite());
            } catch (RuntimeException e) {
                return "TLS-PSK";
            }
        }

        /**
         * What a failed handshake means: {@link TlsRefusedException} when the client's identity is
         * not in the key file or its key did not match, else the failure itself.
         */
        IOException explain(IOException e) {
            String id = identity == null ? null : "'" + identity + "'";
            if (identity != null && !known) {
                return new TlsRefusedException("TLS-PSK: unknown identity " + id + " (not in " + keys.file() + ")", e);
            }
            if (identity != null && e instanceof TlsFatalAlert a
                    && (a.getAlertDescription() == AlertDescription.bad_record_mac
                    || a.getAlertDescription() == AlertDescription.decrypt_error)) {
                return new TlsRefusedException("TLS-PSK: wrong key for identity " + id + " ("
                        + AlertDescription.getText(a.getAlertDescription()) + ")", e);
            }
            return e;
        }
    }
}
