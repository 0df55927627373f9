package org.blksnap.backup;

import java.nio.ByteBuffer;
import java.util.Map;
import java.util.function.Consumer;
import java.util.zip.CRC32C;

/** Reads the trailers of sealed packs (two byte-range reads per pack). Stateless. */
final class PackScan {
    private PackScan() {
    }

    /**
     * Adds the ref of every blob listed in a pack trailer of the store to {@code index}. A pack
     * whose trailer is damaged is left out and reported to {@code warn}: its blobs are then simply
     * stored again when needed, never referenced by a new point.
     */
    static void index(ObjectStore store, Map<Sha256, Ref> index, Consumer<String> warn) throws RepositoryException {
        for (ObjectStore.Entry e : store.list(RepositoryLayout.PACKS + "/")) {
            if (!e.key().endsWith(PackDescriptor.SUFFIX)) {
                continue;
            }
            try {
                readTrailer(store, e.key(), e.sizeBytes(), index);
            } catch (RepositoryException x) {
                if (x.code() != RepositoryException.Code.DAMAGED) {
                    throw x;
                }
                warn.accept(x.getMessage() + "; its chunks are not reused");
            }
        }
    }

    /** The pack id of a key {@code packs/<32 hex>.pack}. */
    static PackId packId(String key) throws RepositoryException {
        String name = key.substring(key.lastIndexOf('/') + 1);
        try {
            return PackId.parse(name.substring(0, name.length() - PackDescriptor.SUFFIX.length()));
        } catch (IllegalArgumentException | IndexOutOfBoundsException e) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, "pack " + key + ": " + e.getMessage());
        }
    }

    /** Adds the entries of one pack's trailer ({@code size} bytes long) to {@code index}. */
    static void readTrailer(ObjectStore store, String key, long size, Map<Sha256, Ref> index) throws RepositoryException {
        PackId id = packId(key);
        String pack = store.describe(key);
        if (size < PackDescriptor.HEADER_BYTES + PackDescriptor.FOOTER_BYTES) {
            throw damaged(pack, "is " + size + " bytes, shorter than a header and a footer");
        }
        ByteBuffer footer = store.read(key, size - PackDescriptor.FOOTER_BYTES, PackDescriptor.FOOTER_BYTES);
        if (footer.remaining() < PackDescriptor.FOOTER_BYTES) {
            throw damaged(pack, "ends before its footer");
        }
        int count = footer.getInt();
        int crc = footer.getInt();
        long trailerOffset = footer.getLong();
        if (footer.getLong() != PackDescriptor.FOOTER_MAGIC) {
            throw damaged(pack, "has no footer magic");
        }
        long trailerBytes = (long) count * PackDescriptor.ENTRY_BYTES;
        if (count < 0 || trailerOffset < PackDescriptor.HEADER_BYTES
                || trailerOffset + trailerBytes + PackDescriptor.FOOTER_BYTES != size) {
            throw damaged(pack, "footer says " + count + " entries at offset " + trailerOffset
                    + ", which does not end the " + size + "-byte file");
        }
        ByteBuffer trailer = store.read(key, trailerOffset, (int) trailerBytes);
        if (trailer.remaining() < trailerBytes) {
            throw damaged(pack, "ends before its trailer");
        }
        CRC32C c = new CRC32C();
        c.update(trailer.array(), 0, (int) trailerBytes);
        if ((int) c.getValue() != crc) {
            throw damaged(pack, "trailer checksum mismatch");
        }
        for (int i = 0; i < count; i++) {
            Sha256 hash = Sha256.read(trailer);
            int kind = trailer.get() & 0xff;
            trailer.get();
            trailer.getShort();
            long offset = trailer.getInt() & 0xffffffffL;
            int length = trailer.getInt();
            if (offset + length > trailerOffset || length < PackDescriptor.BLOB_HEADER_BYTES) {
                throw damaged(pack, "trailer entry " + i + " (" + length + " bytes at " + offset + ") is outside the blobs");
            }
            index.putIfAbsent(hash, new Ref(kind, hash, id, offset, length));
        }
    }

    private static RepositoryException damaged(String pack, String what) {
        return new RepositoryException(RepositoryException.Code.DAMAGED, "pack " + pack + " " + what);
    }
}
