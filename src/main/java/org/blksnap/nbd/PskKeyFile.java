package org.blksnap.nbd;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The pre-shared keys of a TLS-PSK server, read from a key file in the format of gnutls'
 * {@code psktool} (what nbdkit's {@code --tls-psk}, libnbd's {@code tls-psk-file} and qemu's
 * {@code tls-creds-psk} {@code keys.psk} read):
 *
 * <pre>
 *   IDENTITY:HEXKEY      one client per line, e.g. alice:8f3a...c2 (psktool -u alice -p keys.psk)
 * </pre>
 *
 * <p>IDENTITY is the text before the first {@code :} (UTF-8, 1 to {@link #MAX_IDENTITY_BYTES} bytes,
 * no control characters); HEXKEY is the key in hexadecimal, 1 to {@link #MAX_KEY_BYTES} bytes
 * (psktool writes 32). Empty lines are skipped. Identities gnutls writes in hexadecimal ({@code #HEX:KEY})
 * are refused by name, as is an identity given twice (gnutls would silently take the first).
 *
 * <p>Immutable and thread-safe; {@link #key} hands out copies.
 */
final class PskKeyFile {
    /** Longer identities than this are refused (gnutls' limit on a PSK username is 128 bytes too). */
    static final int MAX_IDENTITY_BYTES = 128;
    /** psktool's own limit on a key. */
    static final int MAX_KEY_BYTES = 512;
    /** A key file larger than this is not a key file. */
    static final long MAX_FILE_BYTES = 16L << 20;

    private final Path file;
    private final Map<String, byte[]> keys;

    private PskKeyFile(Path file, Map<String, byte[]> keys) {
        this.file = file;
        this.keys = keys;
    }

    /**
     * Reads a key file.
     *
     * @throws IOException naming the file, and the line and what is wrong with it for a bad line
     */
    static PskKeyFile read(Path file) throws IOException {
        long size;
        byte[] bytes;
        try {
            size = Files.size(file);
            if (size > MAX_FILE_BYTES) {
                throw new IOException("PSK key file " + file + " is " + size + " bytes, more than a key file can be ("
                        + MAX_FILE_BYTES + ")");
            }
            bytes = Files.readAllBytes(file);
        } catch (IOException e) {
            if (e.getMessage() != null && e.getMessage().startsWith("PSK key file")) {
                throw e;
            }
            throw new IOException("PSK key file " + file + " cannot be read: " + e, e);
        }
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(java.nio.ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw new IOException("PSK key file " + file + " is not UTF-8 text (psktool writes IDENTITY:HEXKEY lines)");
        }
        Map<String, byte[]> keys = new LinkedHashMap<>();
        List<String> lines = text.lines().toList();
        for (int i = 0; i < lines.size(); i++) {
            String line = lines.get(i);
            if (line.endsWith("\r")) {
                line = line.substring(0, line.length() - 1);
            }
            if (line.isBlank()) {
                continue;
            }
            String where = "PSK key file " + file + " line " + (i + 1) + ": ";
            int colon = line.indexOf(':');
            if (colon < 0) {
                throw new IOException(where + "expected IDENTITY:HEXKEY (as psktool writes), found no ':'");
            }
            String identity = line.substring(0, colon);
            String hex = line.substring(colon + 1).strip();
            if (identity.isEmpty()) {
                throw new IOException(where + "the identity before ':' is empty");
            }
            if (identity.startsWith("#")) {
                throw new IOException(where + "hexadecimal identities (#HEX) are not supported; write the identity as text");
            }
            if (identity.chars().anyMatch(c -> c < 0x20 || c == 0x7f)) {
                throw new IOException(where + "the identity contains a control character");
            }
            if (identity.getBytes(StandardCharsets.UTF_8).length > MAX_IDENTITY_BYTES) {
                throw new IOException(where + "the identity is longer than " + MAX_IDENTITY_BYTES + " bytes");
            }
            byte[] key;
            try {
                if (hex.isEmpty() || hex.length() % 2 != 0) {
                    throw new IllegalArgumentException("an even number of hexadecimal digits is needed");
                }
                key = HexFormat.of().parseHex(hex);
            } catch (IllegalArgumentException e) {
                throw new IOException(where + "the key of '" + identity + "' is not hexadecimal bytes ("
                        + e.getMessage() + ")");
            }
            if (key.length > MAX_KEY_BYTES) {
                throw new IOException(where + "the key of '" + identity + "' is " + key.length + " bytes, more than "
                        + MAX_KEY_BYTES);
            }
            if (keys.putIfAbsent(identity, key) != null) {
                throw new IOException(where + "identity '" + identity + "' appears a second time");
            }
        }
        if (keys.isEmpty()) {
            throw new IOException("PSK key file " + file + " holds no keys (psktool -u NAME -p " + file + " adds one)");
        }
        return new PskKeyFile(file, Map.copyOf(keys));
    }

    /** A copy of the key of {@code identity}, or null for an identity the file does not have. */
    byte[] key(String identity) {
        byte[] k = keys.get(identity);
        return k == null ? null : Arrays.copyOf(k, k.length);
    }

    Set<String> identities() {
        return keys.keySet();
    }

    Path file() {
        return file;
    }
}
