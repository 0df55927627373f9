package org.blksnap.backup;

/**
 * Layout of a pack file, {@code packs/<32 hex>.pack}: many blobs (compressed chunks and index
 * nodes) in one file, so a repository holds thousands of files rather than millions, with a
 * trailer listing them so the chunk store's index can be rebuilt from the packs alone. A pack is
 * written under {@code tmp/}, fsynced and renamed into {@code packs/}: a pack in {@code packs/}
 * is complete and never changes. All integers big-endian.
 *
 * <pre>
 * pack:
 *   0            8          12         16
 *   +------------+----------+----------+------+------+-----+------+----------------------+--------+
 *   | "BKSNPACK" | version  | reserved | blob | blob | ... | blob | trailer: n x entry   | footer |
 *   +------------+----------+----------+------+------+-----+------+----------------------+--------+
 *
 * blob (header 48 bytes, then the stored payload):
 *   0        4      5      6      8             12              16                48
 *   +--------+------+------+------+-------------+---------------+-----------------+----------------+
 *   | "BLOB" | type | comp | flag 0 | raw length | stored length | name of raw  | stored payload |
 *   +--------+------+------+------+-------------+---------------+-----------------+----------------+
 *   type: 1 chunk, 2 index node (NodeDescriptor.KIND_*); comp: 0 none, 1 zstd frame;
 *   flag: 0 plain (version 1 packs), 1 payload sealed (version 2 packs: an encrypted repository,
 *   CryptoDescriptor; the stored length counts key id, nonce and tag; comp says what the
 *   plaintext is); name: SHA-256 of the raw bytes, or HMAC-SHA-256 under the repository's names
 *   key when it is encrypted
 *
 * trailer entry (44 bytes):
 *   0                 32     33     34     36                40
 *   +-----------------+------+------+------+-----------------+-----------------+
 *   | name of raw     | type | comp | 0  0 | blob offset u32 | blob length u32 |
 *   +-----------------+------+------+------+-----------------+-----------------+
 *
 * footer (24 bytes, the last of the file):
 *   0          4                    8                  16
 *   +----------+--------------------+------------------+------------+
 *   | n u32    | CRC32C of trailer  | trailer offset   | "BKSNPEND" |
 *   +----------+--------------------+------------------+------------+
 * </pre>
 */
final class PackDescriptor {
    private PackDescriptor() {
    }

    static final long PACK_MAGIC = 0x424b534e5041434bL; // "BKSNPACK"
    static final int VERSION = 1;
    /** A pack of an encrypted repository: every blob's payload sealed (flag 1, CryptoDescriptor). */
    static final int VERSION_SEALED = 2;
    static final int HEADER_BYTES = 16;

    static final int BLOB_MAGIC = 0x424c4f42; // "BLOB"
    static final int BLOB_TYPE_OFFSET = 4;
    static final int BLOB_COMP_OFFSET = 5;
    static final int BLOB_RAW_LENGTH_OFFSET = 8;
    static final int BLOB_STORED_LENGTH_OFFSET = 12;
    static final int BLOB_FLAGS_OFFSET = 6;
    static final int BLOB_HASH_OFFSET = 16;
    static final int BLOB_HEADER_BYTES = 48;

    static final int COMP_NONE = 0;
    static final int COMP_ZSTD = 1;
    /** Blob flag: the stored payload is sealed (key id, nonce, AES-256-GCM ciphertext, tag: CryptoDescriptor). */
    static final int FLAG_SEALED = 1;

    /** Largest raw blob, in bytes: the largest chunk ({@link NodeDescriptor#MAX_CHUNK_BYTES}) or node. */
    static final int MAX_RAW_BYTES = NodeDescriptor.MAX_CHUNK_BYTES;
    /** Largest blob in a pack, header included (zstd's worst case expansion is far below 1 MiB here). */
    static final int MAX_BLOB_BYTES = BLOB_HEADER_BYTES + MAX_RAW_BYTES + (1 << 20);

    static final int ENTRY_BYTES = 44;
    static final int ENTRY_TYPE_OFFSET = 32;
    static final int ENTRY_COMP_OFFSET = 33;
    static final int ENTRY_BLOB_OFFSET_OFFSET = 36;
    static final int ENTRY_BLOB_LENGTH_OFFSET = 40;

    static final int FOOTER_BYTES = 24;
    static final long FOOTER_MAGIC = 0x424b534e50454e44L; // "BKSNPEND"

    /** A pack is sealed once it reaches this size in bytes (it may pass it by one read run of blobs). */
    static final long TARGET_PACK_BYTES = 32L << 20;
    /** Blob offsets are u32: a pack never grows past this. */
    static final long MAX_PACK_BYTES = 0xffffffffL;

    static final String SUFFIX = ".pack";
}
