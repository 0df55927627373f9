package org.blksnap.backup;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.BitSet;

/**
 * A point's chunk index as a tree of nodes ({@link NodeDescriptor}): building one from the refs of
 * the chunks just stored plus the previous point's tree, and walking one. Stateless; the methods are
 * thread-safe when the store and reader given are.
 */
final class IndexTree {
    private IndexTree() {
    }

    /** What a walk of a tree sees, in chunk order. */
    interface Visitor {
        /** Chunks {@code [firstChunk, firstChunk + chunkCount)} are all zero. */
        void hole(long firstChunk, long chunkCount) throws RepositoryException;

        /** Chunk {@code chunkIndex} is the blob {@code ref}. */
        void chunk(int chunkIndex, Ref ref) throws RepositoryException;

        /** Node {@code ref} is about to be read (for the points that use it, in verify). */
        default void node(Ref ref) throws RepositoryException {
        }

        /** The walk is over (after the last chunk). */
        default void end() throws RepositoryException {
        }
    }

    /**
     * Builds the tree of a point and stores its nodes. Nodes whose chunks did not change are taken
     * from the previous tree as they are, without being read; the nodes on the path of a changed
     * chunk are read from the previous tree, rebuilt and stored (the store keeps one copy of a node
     * that did not change after all).
     *
     * @param changed   the chunks stored anew in this point ({@code newRefs} has their refs); for a
     *                  full point, every chunk
     * @param newRefs   by chunk index: the ref of each changed chunk (a hole when it is zero)
     * @param prevRoot  the previous point's root of the same geometry, or null for a full point
     * @return the root: a node, or a hole when the whole device is zero
     */
    static Ref build(Geometry g, BitSet changed, Ref[] newRefs, Ref prevRoot, ChunkStore store, BlobReader reader)
            throws RepositoryException {
        return build(g, g.levels() - 1, 0, changed, newRefs, prevRoot, store, reader);
    }

    private static Ref build(Geometry g, int level, long nodeIndex, BitSet changed, Ref[] newRefs, Ref prev,
                             ChunkStore store, BlobReader reader) throws RepositoryException {
        long firstChunk = nodeIndex * g.chunksPerEntry(level) * g.fanout();
        long endChunk = Math.min(g.chunkCount(), firstChunk + g.chunksPerEntry(level) * g.fanout());
        int next = changed.nextSetBit((int) firstChunk);
        if (prev != null && (next < 0 || next >= endChunk)) {
            return prev;
        }
        int n = g.entries(level, nodeIndex);
        Ref[] prevChildren = prev == null ? null : children(g, level, nodeIndex, prev, reader);
        Ref[] children = new Ref[n];
        for (int e = 0; e < n; e++) {
            if (level == 0) {
                int chunk = (int) firstChunk + e;
                children[e] = changed.get(chunk) ? newRefs[chunk] : prevChildren[e];
                if (children[e] == null) {
                    throw new IllegalStateException("chunk " + chunk + " has no ref: neither stored nor in the previous point");
                }
            } else {
                children[e] = build(g, level - 1, nodeIndex * g.fanout() + e, changed, newRefs,
                        prevChildren == null ? null : prevChildren[e], store, reader);
            }
        }
        if (Arrays.stream(children).allMatch(Ref::isHole)) {
            return Ref.HOLE;
        }
        byte[] node = encode(level, children);
        return store.put(NodeDescriptor.KIND_NODE, store.name(node), node);
    }

    /** The refs a node lists: read and checked against the geometry, or all holes for a hole. */
    static Ref[] children(Geometry g, int level, long nodeIndex, Ref ref, BlobReader reader) throws RepositoryException {
        return children(g, level, nodeIndex, ref, reader, null);
    }

    /** {@link #children(Geometry, int, long, Ref, BlobReader)}, telling {@code sink} (may be null) of damaged copies met. */
    static Ref[] children(Geometry g, int level, long nodeIndex, Ref ref, BlobReader reader, BlobReader.DamageSink sink)
            throws RepositoryException {
        int n = g.entries(level, nodeIndex);
        if (ref.isHole()) {
            Ref[] holes = new Ref[n];
            Arrays.fill(holes, Ref.HOLE);
            return holes;
        }
        if (ref.kind() != NodeDescriptor.KIND_NODE) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, ref + " stands where a node of level "
                    + level + " belongs");
        }
        return decode(ref, reader.read(ref, sink), level, n);
    }

    static byte[] encode(int level, Ref[] children) {
        ByteBuffer buf = ByteBuffer.allocate(NodeDescriptor.nodeBytes(children.length));
        buf.putInt(NodeDescriptor.MAGIC).put((byte) NodeDescriptor.VERSION).put((byte) level).putShort((short) 0)
                .putInt(children.length);
        for (Ref c : children) {
            c.write(buf);
        }
        return buf.array();
    }

    static Ref[] decode(Ref ref, byte[] raw, int level, int expectedCount) throws RepositoryException {
        ByteBuffer buf = ByteBuffer.wrap(raw);
        if (raw.length < NodeDescriptor.HEADER_BYTES || buf.getInt(0) != NodeDescriptor.MAGIC
                || buf.get(4) != NodeDescriptor.VERSION) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, ref + " is not a version "
                    + NodeDescriptor.VERSION + " index node");
        }
        int gotLevel = buf.get(NodeDescriptor.LEVEL_OFFSET) & 0xff;
        int count = buf.getInt(NodeDescriptor.COUNT_OFFSET);
        if (gotLevel != level || count != expectedCount || raw.length != NodeDescriptor.nodeBytes(count)) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, ref + " is a node of level " + gotLevel
                    + " with " + count + " refs in " + raw.length + " bytes; the point's geometry wants level " + level
                    + " with " + expectedCount);
        }
        buf.position(NodeDescriptor.HEADER_BYTES);
        Ref[] refs = new Ref[count];
        try {
            for (int i = 0; i < count; i++) {
                refs[i] = Ref.read(buf);
                int want = level == 0 ? NodeDescriptor.KIND_CHUNK : NodeDescriptor.KIND_NODE;
                if (!refs[i].isHole() && refs[i].kind() != want) {
                    throw new IllegalArgumentException("ref " + i + " has kind " + refs[i].kind() + " in a node of level " + level);
                }
            }
        } catch (IllegalArgumentException e) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, ref + ": " + e.getMessage());
        }
        return refs;
    }

    /** Walks the tree of {@code root} in chunk order. */
    static void walk(Geometry g, Ref root, BlobReader reader, Visitor visitor) throws RepositoryException {
        walk(g, g.levels() - 1, 0, root, reader, visitor);
        visitor.end();
    }

    private static void walk(Geometry g, int level, long nodeIndex, Ref ref, BlobReader reader, Visitor visitor)
            throws RepositoryException {
        long firstChunk = nodeIndex * g.chunksPerEntry(level) * g.fanout();
        long endChunk = Math.min(g.chunkCount(), firstChunk + g.chunksPerEntry(level) * g.fanout());
        if (ref.isHole()) {
            visitor.hole(firstChunk, endChunk - firstChunk);
            return;
        }
        visitor.node(ref);
        Ref[] children = children(g, level, nodeIndex, ref, reader);
        for (int e = 0; e < children.length; e++) {
            if (level == 0) {
                int chunk = (int) firstChunk + e;
                if (children[e].isHole()) {
                    visitor.hole(chunk, 1);
                } else {
                    visitor.chunk(chunk, children[e]);
                }
            } else {
                walk(g, level - 1, nodeIndex * g.fanout() + e, children[e], reader, visitor);
            }
        }
    }
}
