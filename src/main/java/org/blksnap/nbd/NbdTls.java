package org.blksnap.nbd;

import java.io.IOException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManagerFactory;
import org.bouncycastle.tls.crypto.TlsCrypto;
import org.bouncycastle.tls.crypto.impl.jcajce.JcaTlsCryptoProvider;

/**
 * TLS settings of an {@link NbdServer}: whether clients may or must upgrade with
 * {@code NBD_OPT_STARTTLS}, and the credentials: either X.509 (PEM files as nbdkit and qemu-nbd
 * take them; JSSE) or pre-shared keys (a gnutls {@code psktool} key file as nbdkit's
 * {@code --tls-psk} takes it; Bouncy Castle's TLS API, since JSSE has no PSK suites), never both,
 * as in nbdkit. TLS 1.3 and 1.2 are offered (1.3 preferred); older versions are not.
 *
 * <p>Immutable and thread-safe: every connection gets its own {@link TlsLayer}.
 */
public final class NbdTls {

    /** How the server treats TLS (the protocol's NOTLS, SELECTIVETLS-for-all-or-nothing, FORCEDTLS). */
    public enum Mode {
        /** STARTTLS is answered NBD_REP_ERR_UNSUP; plain clients only. */
        OFF,
        /** Plain clients and clients that send STARTTLS are both served. */
        ON,
        /**
         * Every option but STARTTLS and ABORT is answered NBD_REP_ERR_TLS_REQD until TLS is on;
         * EXPORT_NAME before TLS, which has no error reply, ends the connection.
         */
        REQUIRE;

        /** Parses {@code off}, {@code on} or {@code require} (any case). */
        public static Mode parse(String text) {
            try {
                return valueOf(text.trim().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--tls '" + text + "' must be off, on or require");
            }
        }
    }

    /** No TLS. */
    public static final NbdTls OFF = new NbdTls(Mode.OFF, null, false, null, null);

    private static final String[] PROTOCOLS = {"TLSv1.3", "TLSv1.2"};

    private final Mode mode;
    /** X.509 credentials, or null. */
    private final SSLContext context;
    private final boolean verifyPeer;
    /** Pre-shared keys, or null; with {@link #crypto}. */
    private final PskKeyFile psk;
    private final TlsCrypto crypto;

    private NbdTls(Mode mode, SSLContext context, boolean verifyPeer, PskKeyFile psk, TlsCrypto crypto) {
        this.mode = mode;
        this.context = context;
        this.verifyPeer = verifyPeer;
        this.psk = psk;
        this.crypto = crypto;
    }

    /**
     * TLS with pre-shared keys from a key file in gnutls' {@code psktool} format ({@code IDENTITY:HEXKEY}
     * lines, see {@link PskKeyFile}): a client must hold the key of an identity in the file. Cipher
     * suites: TLS 1.3 with an external PSK (psk_dhe_ke or psk_ke, as the client offers), TLS 1.2
     * ECDHE-PSK, DHE-PSK and PSK with AES-GCM or ChaCha20-Poly1305 (and ECDHE-PSK with AES-CBC-SHA256,
     * the one ECDHE-PSK suite gnutls has besides ChaCha20).
     *
     * @param mode    {@link Mode#ON} or {@link Mode#REQUIRE} ({@link Mode#OFF} returns {@link #OFF})
     * @param keyFile the key file, read now
     * @throws IOException naming the file, and the line for a bad line
     */
    public static NbdTls fromPskFile(Mode mode, Path keyFile) throws IOException {
        Objects.requireNonNull(mode, "mode");
        if (mode == Mode.OFF) {
            return OFF;
        }
        Objects.requireNonNull(keyFile, "keyFile (--tls-psk) is needed with --tls " + mode.name().toLowerCase(Locale.ROOT));
        PskKeyFile keys = PskKeyFile.read(keyFile);
        TlsCrypto crypto = new JcaTlsCryptoProvider().create(new SecureRandom());
        NbdTls tls = new NbdTls(mode, null, false, keys, crypto);
        if (PskTlsLayer.cipherSuites(crypto).length == 0) {
            throw new IOException("no TLS-PSK cipher suite is available with this Java runtime's crypto providers");
        }
        return tls;
    }

    /**
     * TLS with X.509 credentials from PEM files.
     *
     * @param mode       {@link Mode#ON} or {@link Mode#REQUIRE} ({@link Mode#OFF} returns {@link #OFF})
     * @param cert       the server certificate, optionally followed by its chain
     * @param key        its private key (PKCS#8, PKCS#1 RSA or SEC1 EC, unencrypted)
     * @param ca         CA certificates that sign client certificates, or null; needed by {@code verifyPeer}
     * @param verifyPeer require a client certificate signed by {@code ca} (the handshake fails otherwise)
     * @throws IOException              naming the file that cannot be read or parsed, or the mismatch
     * @throws IllegalArgumentException when {@code verifyPeer} is set without {@code ca}
     */
    public static NbdTls fromPem(Mode mode, Path cert, Path key, Path ca, boolean verifyPeer) throws IOException {
        Objects.requireNonNull(mode, "mode");
        if (mode == Mode.OFF) {
            return OFF;
        }
        Objects.requireNonNull(cert, "cert (--tls-cert) is needed with --tls " + mode.name().toLowerCase(Locale.ROOT));
        Objects.requireNonNull(key, "key (--tls-key) is needed with --tls " + mode.name().toLowerCase(Locale.ROOT));
        if (verifyPeer && ca == null) {
            throw new IllegalArgumentException("--tls-verify-peer needs --tls-ca (the CA that signs client certificates)");
        }
        List<X509Certificate> chain = PemFiles.certificates(cert);
        PrivateKey privateKey = PemFiles.privateKey(key);
        try {
            if (!belongTogether(privateKey, chain.getFirst())) {
                throw new IOException("key file " + key + " is not the key of the certificate in " + cert);
            }
            KeyStore keys = KeyStore.getInstance("PKCS12");
            keys.load(null, null);
            char[] password = "in-memory only".toCharArray(); // the key store never leaves this method
            keys.setKeyEntry("server", privateKey, password, chain.toArray(new X509Certificate[0]));
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(keys, password);
            TrustManagerFactory tmf = null;
            if (ca != null) {
                KeyStore trust = KeyStore.getInstance("PKCS12");
                trust.load(null, null);
                int i = 0;
                for (X509Certificate c : PemFiles.certificates(ca)) {
                    trust.setCertificateEntry("ca" + i++, c);
                }
                tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
                tmf.init(trust);
            }
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(kmf.getKeyManagers(), tmf == null ? null : tmf.getTrustManagers(), null);
            NbdTls tls = new NbdTls(mode, context, verifyPeer, null, null);
            tls.newEngine(); // fails now, not at the first client, if the key does not fit the certificate's algorithm
            return tls;
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            throw new IOException("TLS credentials " + cert + " and " + key + " cannot be used: " + e.getMessage(), e);
        }
    }

    /** Whether the key signs what the certificate's public key verifies. */
    private static boolean belongTogether(PrivateKey key, X509Certificate cert) throws GeneralSecurityException {
        String algorithm = switch (key.getAlgorithm()) {
            case "RSA" -> "SHA256withRSA";
            case "EC" -> "SHA256withECDSA";
            case "EdDSA", "Ed25519", "Ed448" -> key.getAlgorithm();
            default -> null;
        };
        if (algorithm == null || !cert.getPublicKey().getAlgorithm().equals(key.getAlgorithm())
                && !(key.getAlgorithm().startsWith("Ed") && cert.getPublicKey().getAlgorithm().startsWith("Ed"))) {
            return algorithm == null; // an algorithm not checked here is left to the TLS handshake
        }
        byte[] probe = "blksnapd key check".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        java.security.Signature signer = java.security.Signature.getInstance(algorithm);
        signer.initSign(key);
        signer.update(probe);
        byte[] signature = signer.sign();
        java.security.Signature verifier = java.security.Signature.getInstance(algorithm);
        verifier.initVerify(cert.getPublicKey());
        verifier.update(probe);
        return verifier.verify(signature);
    }

    public Mode mode() {
        return mode;
    }

    /** Whether clients must present a certificate signed by the CA. */
    public boolean verifyPeer() {
        return verifyPeer;
    }

    /** Whether clients authenticate with pre-shared keys (and the server with them too) instead of X.509. */
    public boolean preSharedKeys() {
        return psk != null;
    }

    /**
     * The TLS layer of one connection, over {@code raw}.
     *
     * @param received bytes already read after the STARTTLS reply (the start of the client's handshake)
     */
    TlsLayer newLayer(java.nio.channels.ByteChannel raw, java.nio.ByteBuffer received) {
        if (psk != null) {
            return new PskTlsLayer(new PskTlsLayer.Server(crypto, psk), raw, received);
        }
        return new JsseTlsLayer(newEngine(), raw, received);
    }

    /** A server-side engine for one connection (X.509). */
    private SSLEngine newEngine() {
        if (context == null) {
            throw new IllegalStateException("TLS is off");
        }
        SSLEngine engine = context.createSSLEngine();
        engine.setUseClientMode(false);
        SSLParameters p = engine.getSSLParameters();
        p.setProtocols(PROTOCOLS);
        if (verifyPeer) {
            p.setNeedClientAuth(true);
        }
        engine.setSSLParameters(p);
        return engine;
    }

    @Override
    public String toString() {
        if (psk != null) {
            return "tls " + mode.name().toLowerCase(Locale.ROOT) + " with pre-shared keys from " + psk.file() + " ("
                    + psk.identities().size() + " identities)";
        }
        return "tls " + mode.name().toLowerCase(Locale.ROOT) + (verifyPeer ? " (clients verified)" : "");
    }
}
