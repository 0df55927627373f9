package org.blksnap.backup;

/**
 * Layouts of client-side encryption (repository format version 3, docs/repository.md
 * "Encryption"): the key file, the keys derived from it, the config lines that say a repository is
 * encrypted, and the sealed form of a blob payload and of a manifest. All integers big-endian.
 *
 * <pre>
 * key file (text, mode 0600, made by `blksnap repo init --encrypt`):
 *   blksnap-repository-key\n
 *   version 1\n
 *   key &lt;64 hex digits: the 256-bit master key&gt;\n
 *
 * derived keys (HKDF-SHA-256, salt "blksnap-repository", info as below, 32 bytes each):
 *   "blksnap names v1"    HMAC-SHA-256 key naming chunks and nodes: name = HMAC(names, raw bytes)
 *   "blksnap data v1"     base of the AES-256 keys: the key of key id K is HMAC-SHA-256(data, K)
 *   "blksnap check v1"    key check: HMAC-SHA-256(check, "blksnap key check " + repository id)
 *
 * config of an encrypted repository (version 3; an unencrypted one stays version 2):
 *   blksnap-backup-repository\nversion 3\nid &lt;uuid&gt;\n
 *   encryption aes-256-gcm\n
 *   key-check &lt;64 hex digits&gt;\n
 *
 * sealed payload (a blob's stored payload in a version 2 pack, flag 1 in the blob header):
 *   0               16           28                          28+n          44+n
 *   +---------------+------------+---------------------------+-------------+
 *   | key id (16)   | nonce (12) | AES-256-GCM ciphertext (n)| GCM tag (16)|
 *   +---------------+------------+---------------------------+-------------+
 *   the plaintext is the payload as an unencrypted pack would store it (zstd frame or raw bytes);
 *   associated data: the blob's 48-byte header (type, compression, lengths, name), so a payload
 *   cannot be moved under another header or name. Key id: random per writer session (a session
 *   writes far fewer than 2^32 blobs, the bound of random 96-bit nonces under one key); nonce:
 *   random per blob.
 *
 * sealed manifest (points/&lt;id&gt;.point of an encrypted repository):
 *   0           8          12              28           40                            40+n    56+n
 *   +-----------+----------+---------------+------------+-----------------------------+-------+
 *   | "BKSNMENC"| version  | key id (16)   | nonce (12) | ciphertext of the manifest  | tag   |
 *   +-----------+----------+---------------+------------+-----------------------------+-------+
 *   the plaintext is a ManifestDescriptor manifest (two lines, format 2); associated data: the
 *   first 12 bytes and the object's key ("points/&lt;id&gt;.point"), so a manifest cannot be renamed.
 * </pre>
 */
final class CryptoDescriptor {
    private CryptoDescriptor() {
    }

    static final String KEY_MAGIC = "blksnap-repository-key";
    static final int KEY_VERSION = 1;
    static final int KEY_BYTES = 32;
    /** Largest key file read, in bytes. */
    static final int MAX_KEY_FILE_BYTES = 1024;

    static final byte[] HKDF_SALT = "blksnap-repository".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
    static final String INFO_NAMES = "blksnap names v1";
    static final String INFO_DATA = "blksnap data v1";
    static final String INFO_CHECK = "blksnap check v1";
    static final String CHECK_PREFIX = "blksnap key check ";

    static final String CONFIG_ENCRYPTION = "encryption";
    static final String CONFIG_CIPHER = "aes-256-gcm";
    static final String CONFIG_KEY_CHECK = "key-check";

    static final int KEY_ID_BYTES = 16;
    static final int NONCE_BYTES = 12;
    static final int TAG_BYTES = 16;
    static final int TAG_BITS = TAG_BYTES * 8;
    /** Bytes a sealed payload adds to its plaintext: key id, nonce and tag. */
    static final int OVERHEAD_BYTES = KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES;

    static final long MANIFEST_MAGIC = 0x424b534e4d454e43L; // "BKSNMENC"
    static final int MANIFEST_VERSION = 1;
    static final int MANIFEST_VERSION_OFFSET = 8;
    static final int MANIFEST_HEADER_BYTES = 12;
}
