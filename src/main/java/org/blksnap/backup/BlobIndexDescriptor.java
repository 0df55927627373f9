package org.blksnap.backup;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32C;

/**
 * Layout of an index object, {@code index/<name>.idx}: the trailers of the packs one writer sealed
 * for one point (or, for {@code upgrade-*}, of every pack of a version 1 repository), so that
 * other writers learn which blobs exist by reading small objects instead of listing and reading
 * every pack. Written before the point's manifest; immutable (gc writes a new one without the
 * packs it removed and deletes the old). All integers big-endian.
 *
 * <pre>
 *   0           8          12            16
 *   +-----------+----------+-------------+-----------------------------------------------+--------+
 *   | "BKSNIDX1"| version  | pack count  | per pack: pack id (16) | n u32 | n x entry (44) | CRC32C |
 *   +-----------+----------+-------------+-----------------------------------------------+--------+
 *   entry: as a pack trailer's entry (PackDescriptor): SHA-256, type, comp, 0 0, offset u32, length u32
 *   CRC32C (4 bytes, the last): of every byte before it
 * </pre>
 */
final class BlobIndexDescriptor {
    private BlobIndexDescriptor() {
    }

    static final long MAGIC = 0x424b534e49445831L; // "BKSNIDX1"
    static final int VERSION = 1;
    static final int HEADER_BYTES = 16;
    static final int PACK_HEADER_BYTES = PackId.BYTES + 4;
    static final int CRC_BYTES = 4;

    static byte[] encode(List<ChunkStore.SealedPack> packs) {
        long size = HEADER_BYTES + CRC_BYTES;
        for (ChunkStore.SealedPack p : packs) {
            size += PACK_HEADER_BYTES + (long) p.entries().size() * PackDescriptor.ENTRY_BYTES;
        }
        if (size > RepositoryLayout.MAX_INDEX_BYTES) {
            throw new IllegalArgumentException("an index object of " + size + " bytes passes "
                    + RepositoryLayout.MAX_INDEX_BYTES);
        }
        ByteBuffer b = ByteBuffer.allocate((int) size);
        b.putLong(MAGIC).putInt(VERSION).putInt(packs.size());
        for (ChunkStore.SealedPack p : packs) {
            p.id().write(b);
            b.putInt(p.entries().size());
            for (byte[] e : p.entries()) {
                b.put(e);
            }
        }
        CRC32C crc = new CRC32C();
        crc.update(b.array(), 0, b.position());
        b.putInt((int) crc.getValue());
        return b.array();
    }

    /**
     * The packs an index object lists, with their entries.
     *
     * @param name names the object in errors
     * @throws RepositoryException DAMAGED torn, flipped or not an index object
     */
    static List<ChunkStore.SealedPack> decode(String name, byte[] bytes) throws RepositoryException {
        if (bytes.length < HEADER_BYTES + CRC_BYTES) {
            throw damaged(name, "is " + bytes.length + " bytes, shorter than a header");
        }
        CRC32C crc = new CRC32C();
        crc.update(bytes, 0, bytes.length - CRC_BYTES);
        ByteBuffer b = ByteBuffer.wrap(bytes);
        if ((int) crc.getValue() != b.getInt(bytes.length - CRC_BYTES)) {
            throw damaged(name, "does not match its checksum");
        }
        if (b.getLong() != MAGIC || b.getInt() != VERSION) {
            throw damaged(name, "is not an index object of version " + VERSION);
        }
        int packCount = b.getInt();
        List<ChunkStore.SealedPack> packs = new ArrayList<>();
        for (int i = 0; i < packCount; i++) {
            if (b.remaining() < PACK_HEADER_BYTES + CRC_BYTES) {
                throw damaged(name, "ends inside pack " + i);
            }
            PackId id = PackId.read(b);
            int n = b.getInt();
            if (n < 0 || (long) n * PackDescriptor.ENTRY_BYTES > b.remaining() - CRC_BYTES) {
                throw damaged(name, "says pack " + id + " has " + n + " entries, more than the object holds");
            }
            List<byte[]> entries = new ArrayList<>(n);
            for (int e = 0; e < n; e++) {
                byte[] entry = new byte[PackDescriptor.ENTRY_BYTES];
                b.get(entry);
                entries.add(entry);
            }
            packs.add(new ChunkStore.SealedPack(id, entries));
        }
        if (b.remaining() != CRC_BYTES) {
            throw damaged(name, "has " + (b.remaining() - CRC_BYTES) + " bytes after its last pack");
        }
        return packs;
    }

    /** Adds the refs of a pack's entries to {@code index} (the first ref of a name stays). */
    static void addRefs(ChunkStore.SealedPack pack, Map<Sha256, Ref> index) {
        addRefs(pack, index, java.util.Set.of());
    }

    /** {@link #addRefs(ChunkStore.SealedPack, Map)} less the copies in {@code damaged} ({@link DamagedCopies#normal}). */
    static void addRefs(ChunkStore.SealedPack pack, Map<Sha256, Ref> index, java.util.Set<Ref> damaged) {
        for (byte[] e : pack.entries()) {
            ByteBuffer b = ByteBuffer.wrap(e);
            Sha256 hash = Sha256.read(b);
            int kind = b.get() & 0xff;
            long offset = b.getInt(PackDescriptor.ENTRY_BLOB_OFFSET_OFFSET) & 0xffffffffL;
            int length = b.getInt(PackDescriptor.ENTRY_BLOB_LENGTH_OFFSET);
            if (length >= PackDescriptor.BLOB_HEADER_BYTES && length <= PackDescriptor.MAX_BLOB_BYTES
                    && (damaged.isEmpty() || !damaged.contains(new Ref(NodeDescriptor.KIND_CHUNK, hash, pack.id(), offset, length)))) {
                index.putIfAbsent(hash, new Ref(kind, hash, pack.id(), offset, length));
            }
        }
    }

    private static RepositoryException damaged(String name, String what) {
        return new RepositoryException(RepositoryException.Code.DAMAGED, "index object " + name + " " + what);
    }
}
