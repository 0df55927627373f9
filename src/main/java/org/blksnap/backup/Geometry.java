package org.blksnap.backup;

/**
 * The shape of a point: a device of {@code sizeBytes} cut into chunks of {@code chunkSizeBytes}
 * (the last one shorter when the size is not a multiple), indexed by a tree of {@code fanout}
 * refs per node (see {@link NodeDescriptor}). Immutable.
 */
record Geometry(long sizeBytes, int chunkSizeBytes, int fanout) {
    Geometry {
        if (sizeBytes <= 0) {
            throw new IllegalArgumentException("sizeBytes (" + sizeBytes + ") must be > 0");
        }
        if (chunkSizeBytes < NodeDescriptor.MIN_CHUNK_BYTES || chunkSizeBytes > NodeDescriptor.MAX_CHUNK_BYTES
                || Integer.bitCount(chunkSizeBytes) != 1) {
            throw new IllegalArgumentException("chunkSizeBytes (" + chunkSizeBytes + ") must be a power of two within "
                    + NodeDescriptor.MIN_CHUNK_BYTES + ".." + NodeDescriptor.MAX_CHUNK_BYTES);
        }
        if (fanout < NodeDescriptor.MIN_FANOUT || fanout > NodeDescriptor.MAX_FANOUT) {
            throw new IllegalArgumentException("fanout (" + fanout + ") must be within " + NodeDescriptor.MIN_FANOUT
                    + ".." + NodeDescriptor.MAX_FANOUT);
        }
        if (ceilDiv(sizeBytes, chunkSizeBytes) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("sizeBytes (" + sizeBytes + ") has more than 2^31 chunks of "
                    + chunkSizeBytes + " bytes");
        }
    }

    /** Number of chunks, the last possibly short. */
    int chunkCount() {
        return (int) ceilDiv(sizeBytes, chunkSizeBytes);
    }

    /** Byte offset of chunk {@code chunkIndex}. */
    long chunkOffsetBytes(int chunkIndex) {
        return (long) chunkIndex * chunkSizeBytes;
    }

    /** Length in bytes of chunk {@code chunkIndex}. */
    int chunkLengthBytes(int chunkIndex) {
        return (int) Math.min(chunkSizeBytes, sizeBytes - chunkOffsetBytes(chunkIndex));
    }

    /** Levels of nodes: 1 when one node lists every chunk. */
    int levels() {
        int levels = 1;
        long covered = fanout;
        while (covered < chunkCount()) {
            covered *= fanout;
            levels++;
        }
        return levels;
    }

    /** Chunks covered by one entry of a node of {@code level} (1 at level 0). */
    long chunksPerEntry(int level) {
        long n = 1;
        for (int i = 0; i < level; i++) {
            n *= fanout;
        }
        return n;
    }

    /** Number of refs in node {@code nodeIndex} of {@code level}. */
    int entries(int level, long nodeIndex) {
        long first = nodeIndex * chunksPerEntry(level) * fanout;
        long covered = Math.min(chunkCount() - first, chunksPerEntry(level) * fanout);
        return (int) ceilDiv(covered, chunksPerEntry(level));
    }

    static long ceilDiv(long a, long b) {
        return (a + b - 1) / b;
    }
}
