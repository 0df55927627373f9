package org.blksnap.backup;

import com.github.luben.zstd.Zstd;
import com.github.luben.zstd.ZstdException;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * Reads blobs by {@link Ref}: the blob's header must match the ref, its payload must decompress to
 * the raw length, and the raw bytes must hash to the ref's name, else the read fails with
 * {@link RepositoryException.Code#DAMAGED} naming the pack and offset. One byte-range read of the
 * store per blob. Thread-safe (the store is).
 */
final class BlobReader {
    private final ObjectStore store;

    BlobReader(ObjectStore store) {
        this.store = store;
    }

    /** The raw bytes of the blob {@code ref} names, checked against its name. */
    byte[] read(Ref ref) throws RepositoryException {
        if (ref.isHole()) {
            throw new IllegalArgumentException("ref is a hole: it has no blob");
        }
        String key = RepositoryLayout.packKey(ref.pack());
        ByteBuffer blob;
        try {
            blob = store.read(key, ref.offsetBytes(), ref.lengthBytes());
        } catch (RepositoryException e) {
            if (e.code() == RepositoryException.Code.NOT_FOUND) {
                throw damaged(ref, "its pack is missing");
            }
            throw e;
        }
        if (blob.remaining() < ref.lengthBytes()) {
            throw damaged(ref, "the pack ends before the blob (" + store.describe(key) + " ends at "
                    + (ref.offsetBytes() + blob.remaining()) + ")");
        }
        if (blob.getInt(0) != PackDescriptor.BLOB_MAGIC) {
            throw damaged(ref, "no blob header at its offset");
        }
        int type = blob.get(PackDescriptor.BLOB_TYPE_OFFSET) & 0xff;
        int comp = blob.get(PackDescriptor.BLOB_COMP_OFFSET) & 0xff;
        int rawLength = blob.getInt(PackDescriptor.BLOB_RAW_LENGTH_OFFSET);
        int storedLength = blob.getInt(PackDescriptor.BLOB_STORED_LENGTH_OFFSET);
        Sha256 named = Sha256.read(blob.position(PackDescriptor.BLOB_HASH_OFFSET));
        if (type != ref.kind() || !named.equals(ref.hash())) {
            throw damaged(ref, "the blob header names " + (type == NodeDescriptor.KIND_NODE ? "node " : "chunk ")
                    + named.shortHex());
        }
        if (rawLength < 0 || rawLength > PackDescriptor.MAX_RAW_BYTES
                || storedLength != ref.lengthBytes() - PackDescriptor.BLOB_HEADER_BYTES) {
            throw damaged(ref, "blob lengths raw " + rawLength + " stored " + storedLength + " do not fit the ref's "
                    + ref.lengthBytes() + " bytes");
        }
        byte[] stored = Arrays.copyOfRange(blob.array(), PackDescriptor.BLOB_HEADER_BYTES, ref.lengthBytes());
        byte[] raw;
        if (comp == PackDescriptor.COMP_NONE) {
            raw = stored;
            if (rawLength != storedLength) {
                throw damaged(ref, "an uncompressed blob of raw length " + rawLength + " stores " + storedLength);
            }
        } else if (comp == PackDescriptor.COMP_ZSTD) {
            try {
                raw = Zstd.decompress(stored, rawLength);
            } catch (ZstdException | IllegalArgumentException e) {
                throw damaged(ref, "zstd: " + e.getMessage());
            }
            if (raw.length != rawLength) {
                throw damaged(ref, "decompressed to " + raw.length + " bytes, not " + rawLength);
            }
        } else {
            throw damaged(ref, "unknown compression " + comp);
        }
        if (!Sha256.of(raw).equals(ref.hash())) {
            throw damaged(ref, "its content does not hash to its name");
        }
        return raw;
    }

    private static RepositoryException damaged(Ref ref, String why) {
        return new RepositoryException(RepositoryException.Code.DAMAGED, ref + ": " + why);
    }
}
