package org.blksnap.nbd;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads the PEM files nbdkit, qemu-nbd and libnbd use ({@code ca-cert.pem}, {@code server-cert.pem},
 * {@code server-key.pem}): X.509 certificates, and an unencrypted private key as PKCS#8
 * ({@code BEGIN PRIVATE KEY}, what {@code openssl genpkey} and {@code certtool --pkcs8} write),
 * PKCS#1 RSA ({@code BEGIN RSA PRIVATE KEY}, certtool's default) or SEC1 EC ({@code BEGIN EC PRIVATE
 * KEY}). The JDK reads only PKCS#8, so the other two are wrapped into PKCS#8 here (a fixed DER
 * prefix; the SEC1 curve is copied from the key). Stateless.
 */
final class PemFiles {
    private static final Pattern BLOCK =
            Pattern.compile("-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\\s]*?)-----END \\1-----");
    /** AlgorithmIdentifier of rsaEncryption (1.2.840.113549.1.1.1) with NULL parameters. */
    private static final byte[] RSA_ALGORITHM = {0x30, 0x0d, 0x06, 0x09, 0x2a, (byte) 0x86, 0x48, (byte) 0x86,
            (byte) 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
    /** OID id-ecPublicKey (1.2.840.10045.2.1), to be followed by the curve OID in an AlgorithmIdentifier. */
    private static final byte[] EC_PUBLIC_KEY_OID = {0x06, 0x07, 0x2a, (byte) 0x86, 0x48, (byte) 0xce, 0x3d, 0x02, 0x01};

    private PemFiles() {
    }

    /**
     * The certificates of a PEM file, in file order.
     *
     * @throws IOException naming the file when it cannot be read or holds no certificate
     */
    static List<X509Certificate> certificates(Path file) throws IOException {
        byte[] bytes = read(file, "certificate");
        List<X509Certificate> out = new ArrayList<>();
        try {
            for (var c : CertificateFactory.getInstance("X.509").generateCertificates(new ByteArrayInputStream(bytes))) {
                out.add((X509Certificate) c);
            }
        } catch (CertificateException e) {
            throw new IOException("certificate file " + file + " is not PEM X.509: " + e.getMessage(), e);
        }
        if (out.isEmpty()) {
            throw new IOException("certificate file " + file + " holds no certificate");
        }
        return List.copyOf(out);
    }

    /**
     * The first private key of a PEM file.
     *
     * @throws IOException naming the file when it cannot be read, holds no key, an encrypted one, or one of an
     *                     algorithm other than RSA, EC, Ed25519/Ed448
     */
    static PrivateKey privateKey(Path file) throws IOException {
        String text = new String(read(file, "key"), StandardCharsets.US_ASCII);
        Matcher m = BLOCK.matcher(text);
        while (m.find()) {
            String type = m.group(1);
            byte[] der;
            try {
                der = Base64.getMimeDecoder().decode(m.group(2));
            } catch (IllegalArgumentException e) {
                throw new IOException("key file " + file + ": the " + type + " block is not valid base64", e);
            }
            byte[] pkcs8 = switch (type) {
                case "PRIVATE KEY" -> der;
                case "RSA PRIVATE KEY" -> sequence(integerZero(), RSA_ALGORITHM, tlv(0x04, der));
                case "EC PRIVATE KEY" -> sequence(integerZero(), sequence(EC_PUBLIC_KEY_OID, sec1Curve(der, file)),
                        tlv(0x04, der));
                case "ENCRYPTED PRIVATE KEY" -> throw new IOException("key file " + file + " is encrypted; blksnapd"
                        + " needs an unencrypted key (openssl pkey -in KEY -out PLAIN), readable only by its user");
                default -> null;
            };
            if (pkcs8 != null) {
                return decode(pkcs8, file);
            }
        }
        throw new IOException("key file " + file + " holds no PEM private key (BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY"
                + " or BEGIN EC PRIVATE KEY)");
    }

    private static PrivateKey decode(byte[] pkcs8, Path file) throws IOException {
        for (String algorithm : new String[] {"RSA", "EC", "Ed25519", "Ed448", "RSASSA-PSS"}) {
            try {
                return KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(pkcs8));
            } catch (GeneralSecurityException e) {
                // try the next algorithm
            }
        }
        throw new IOException("key file " + file + ": not an RSA, EC or EdDSA private key the JDK can read");
    }

    private static byte[] read(Path file, String what) throws IOException {
        try {
            return Files.readAllBytes(file);
        } catch (IOException e) {
            throw new IOException("cannot read " + what + " file " + file + ": " + e, e);
        }
    }

    /** The curve OID (a whole TLV) of a SEC1 ECPrivateKey: SEQUENCE { INTEGER 1, OCTET STRING, [0] { OID }, ... }. */
    private static byte[] sec1Curve(byte[] der, Path file) throws IOException {
        int[] pos = {0};
        try {
            expect(der, pos, 0x30);
            length(der, pos);
            skip(der, pos); // version
            skip(der, pos); // private key
            expect(der, pos, 0xa0);
            length(der, pos);
            int start = pos[0];
            expect(der, pos, 0x06);
            int len = length(der, pos);
            return java.util.Arrays.copyOfRange(der, start, pos[0] + len);
        } catch (IndexOutOfBoundsException | IOException e) {
            throw new IOException("key file " + file + ": EC PRIVATE KEY without a named curve (convert it with"
                    + " openssl pkcs8 -topk8 -nocrypt)", e);
        }
    }

    private static void expect(byte[] der, int[] pos, int tag) throws IOException {
        if ((der[pos[0]++] & 0xff) != tag) {
            throw new IOException("unexpected DER tag");
        }
    }

    private static int length(byte[] der, int[] pos) throws IOException {
        int first = der[pos[0]++] & 0xff;
        if (first < 0x80) {
            return first;
        }
        int n = first & 0x7f;
        if (n > 3) {
            throw new IOException("DER length too long");
        }
        int len = 0;
        for (int i = 0; i < n; i++) {
            len = (len << 8) | (der[pos[0]++] & 0xff);
        }
        return len;
    }

    private static void skip(byte[] der, int[] pos) throws IOException {
        pos[0]++;
        int len = length(der, pos);
        pos[0] += len;
    }

    private static byte[] integerZero() {
        return new byte[] {0x02, 0x01, 0x00};
    }

    private static byte[] sequence(byte[]... parts) {
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            body.writeBytes(p);
        }
        return tlv(0x30, body.toByteArray());
    }

    private static byte[] tlv(int tag, byte[] value) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(value.length + 6);
        out.write(tag);
        int len = value.length;
        if (len < 0x80) {
            out.write(len);
        } else if (len < 0x100) {
            out.write(0x81);
            out.write(len);
        } else if (len < 0x10000) {
            out.write(0x82);
            out.write(len >> 8);
            out.write(len);
        } else {
            out.write(0x83);
            out.write(len >> 16);
            out.write(len >> 8);
            out.write(len);
        }
        out.writeBytes(value);
        return out.toByteArray();
    }
}
