package org.blksnap.backup;

import java.nio.ByteBuffer;

/**
 * A reference to a stored blob, or a hole: everything a reader needs to fetch a chunk or an index
 * node without any repository-wide index. Encoded in {@link NodeDescriptor#REF_BYTES} bytes (see
 * {@link NodeDescriptor}). Immutable.
 *
 * @param kind        {@link NodeDescriptor#KIND_HOLE}, {@link NodeDescriptor#KIND_CHUNK} or {@link NodeDescriptor#KIND_NODE}
 * @param hash        SHA-256 of the blob's raw (uncompressed) bytes; null for a hole
 * @param pack        the pack holding the blob; null for a hole
 * @param offsetBytes where the blob's header starts in the pack
 * @param lengthBytes the blob's length in the pack: header plus stored payload
 */
record Ref(int kind, Sha256 hash, PackId pack, long offsetBytes, int lengthBytes) {
    /** All zeros (a chunk), or a subtree whose chunks are all zeros (a node). */
    static final Ref HOLE = new Ref(NodeDescriptor.KIND_HOLE, null, null, 0, 0);

    boolean isHole() {
        return kind == NodeDescriptor.KIND_HOLE;
    }

    void write(ByteBuffer buf) {
        int start = buf.position();
        buf.put((byte) kind).put((byte) 0).putShort((short) 0);
        if (isHole()) {
            buf.put(new byte[NodeDescriptor.REF_BYTES - 4]);
        } else {
            hash.write(buf);
            pack.write(buf);
            buf.putInt((int) offsetBytes).putInt(lengthBytes);
        }
        assert buf.position() - start == NodeDescriptor.REF_BYTES;
    }

    /**
     * Reads a ref at the buffer's position.
     *
     * @throws IllegalArgumentException an unknown kind or a length out of bounds (a damaged node)
     */
    static Ref read(ByteBuffer buf) {
        int kind = buf.get() & 0xff;
        buf.get();
        buf.getShort();
        if (kind == NodeDescriptor.KIND_HOLE) {
            buf.position(buf.position() + NodeDescriptor.REF_BYTES - 4);
            return HOLE;
        }
        if (kind != NodeDescriptor.KIND_CHUNK && kind != NodeDescriptor.KIND_NODE) {
            throw new IllegalArgumentException("ref kind " + kind + " is not 0 (hole), 1 (chunk) or 2 (node)");
        }
        Sha256 hash = Sha256.read(buf);
        PackId pack = PackId.read(buf);
        long offset = buf.getInt() & 0xffffffffL;
        int length = buf.getInt();
        if (length < PackDescriptor.BLOB_HEADER_BYTES || length > PackDescriptor.MAX_BLOB_BYTES) {
            throw new IllegalArgumentException("ref length " + length + " is not within "
                    + PackDescriptor.BLOB_HEADER_BYTES + ".." + PackDescriptor.MAX_BLOB_BYTES);
        }
        return new Ref(kind, hash, pack, offset, length);
    }

    /** The same blob, found by the store's index, referenced as {@code kind}. */
    Ref as(int newKind) {
        return new Ref(newKind, hash, pack, offsetBytes, lengthBytes);
    }

    @Override
    public String toString() {
        return isHole() ? "hole" : (kind == NodeDescriptor.KIND_CHUNK ? "chunk " : "node ") + hash.shortHex()
                + " (pack " + pack + " offset " + offsetBytes + ")";
    }
}
