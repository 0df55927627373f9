package org.blksnap.backup;

/**
 * Layout of an index node, the unit of a point's chunk index. A point's index is a tree of fixed
 * shape given by the manifest's geometry (chunk count, fanout): a node of level 0 lists
 * {@code fanout} consecutive chunks, a node of level L lists {@code fanout} nodes of level L-1,
 * the root is the one node of the top level. Nodes are blobs named by SHA-256 like chunks, so a
 * subtree in which nothing changed is the same blob in every point that has it: an incremental
 * point writes only its changed chunks and the nodes on their paths to the root. A subtree whose
 * chunks are all zero is a hole ref and is not stored at all. All integers big-endian.
 *
 * <pre>
 * node:
 *   0        4         5       6       8            12
 *   +--------+---------+-------+-------+------------+--------+--------+-----+
 *   | "BKND" | version | level | 0  0  | count u32  | ref 0  | ref 1  | ... |   count refs of 60 bytes
 *   +--------+---------+-------+-------+------------+--------+--------+-----+
 *
 * ref (60 bytes; also the manifest's root, as 120 hex digits):
 *   0      1       4                   36          52                56                60
 *   +------+-------+-------------------+-----------+-----------------+-----------------+
 *   | kind | 0 0 0 | SHA-256 of raw    | pack id   | blob offset u32 | blob length u32 |
 *   +------+-------+-------------------+-----------+-----------------+-----------------+
 *   kind: 0 hole (all the rest zero), 1 chunk, 2 node
 * </pre>
 */
final class NodeDescriptor {
    private NodeDescriptor() {
    }

    static final int MAGIC = 0x424b4e44; // "BKND"
    static final int VERSION = 1;
    static final int LEVEL_OFFSET = 5;
    static final int COUNT_OFFSET = 8;
    static final int HEADER_BYTES = 12;

    static final int REF_BYTES = 60;
    static final int KIND_HOLE = 0;
    static final int KIND_CHUNK = 1;
    static final int KIND_NODE = 2;

    /**
     * Refs per node. 32 keeps a level-0 node at 1.9 KiB: with 64 KiB chunks, 1 % of blocks changed
     * at random rewrites about 27 % of the level-0 nodes (1 - 0.99^32), whose bytes are about 3 % of
     * the changed bytes; a 1 TiB device needs 5 levels and 1 GiB of level-0 nodes for a full point.
     */
    static final int DEFAULT_FANOUT = 32;
    static final int MIN_FANOUT = 2;
    static final int MAX_FANOUT = 4096;

    /** Chunks are tracking blocks: 2^12 .. 2^26 bytes (tracking_block_minimum_shift 12 .. 26). */
    static final int MIN_CHUNK_BYTES = 4096;
    static final int MAX_CHUNK_BYTES = 64 << 20;

    /** Bytes of a node of {@code count} refs. */
    static int nodeBytes(int count) {
        return HEADER_BYTES + count * REF_BYTES;
    }
}
