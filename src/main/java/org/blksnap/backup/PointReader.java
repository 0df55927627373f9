package org.blksnap.backup;

import java.util.List;

/**
 * Random access to one point's content, chunk by chunk: the read side a server of points needs
 * ({@code blksnap serve}, docs/serve.md). A chunk is found through the point's index tree, one node
 * per level, and read, decompressed and checked against its name ({@link BlobReader}); nodes and
 * chunks go through the caller's {@link BlobCache}, keyed by content (kind and SHA-256), so points
 * that share chunks share cache entries.
 *
 * <p>This class is the whole contract between the server and the repository's storage: "open a
 * point, then locate and read chunk N". A repository on another storage (an object store) plugs in
 * behind {@link Repository#reader()} without the server changing.
 *
 * <p>Thread-safe: any number of threads may read chunks at once (the blob reader and the cache are
 * thread-safe, the rest is immutable). Every failure is a {@link RepositoryException} whose message
 * names the point and the chunk: {@code DAMAGED} (a node or chunk that does not match its name, or a
 * missing pack), {@code IO} (the pack could not be read). Nothing wrong is ever returned.
 */
public final class PointReader {
    /**
     * Where decoded nodes and checked chunks are kept between reads; implemented by the server.
     * Must be thread-safe. Values are shared: callers never modify them.
     */
    public interface BlobCache {
        /**
         * The value for {@code key}: cached, or loaded by {@code loader} (which may throw; a failed
         * load is not cached). Concurrent calls for one key should load it once.
         *
         * @param key         equal by value for equal content (kind and hash)
         * @param weightBytes roughly the bytes the value holds, for the cache's bound
         */
        <T> T get(Object key, long weightBytes, Loader<T> loader) throws RepositoryException;
    }

    /** Loads a value on a cache miss. */
    @FunctionalInterface
    public interface Loader<T> {
        T load() throws RepositoryException;
    }

    /** A cache that keeps nothing: every call loads. */
    public static final BlobCache NO_CACHE = new BlobCache() {
        @Override
        public <T> T get(Object key, long weightBytes, Loader<T> loader) throws RepositoryException {
            return loader.load();
        }
    };

    /** Heap bytes of one decoded ref (the record, its hash and pack id), for the cache's weight. */
    private static final int DECODED_REF_BYTES = 120;

    /** A cache key: a blob by kind and content name. */
    private record BlobKey(int kind, Sha256 hash) {
    }

    /** The points of a repository that read, and the messages of the manifests that do not. */
    public record Listing(List<Point> points, List<String> damaged) {
    }

    private final Point point;
    private final Geometry g;
    private final Ref root;
    private final BlobReader reader;
    private final BlobCache cache;
    /** Chunks covered by one entry of a node, by level. */
    private final long[] chunksPerEntry;

    private PointReader(Point point, Ref root, BlobReader reader, BlobCache cache) {
        this.point = point;
        this.g = point.geometry();
        this.root = root;
        this.reader = reader;
        this.cache = cache;
        this.chunksPerEntry = new long[g.levels()];
        for (int level = 0; level < chunksPerEntry.length; level++) {
            chunksPerEntry[level] = g.chunksPerEntry(level);
        }
    }

    /**
     * Every point whose manifest reads, oldest first; the manifests that do not read are named in
     * {@link Listing#damaged()} instead of failing the listing.
     *
     * @throws RepositoryException IO: the points directory cannot be listed
     */
    public static Listing list(Repository repo) throws RepositoryException {
        Repository.Scan s = repo.scan();
        return new Listing(s.points(), s.damaged().stream().map(Throwable::getMessage).toList());
    }

    /**
     * Opens point {@code pointId} of {@code repo} for reading. Call from one thread at a time per
     * repository (the repository's blob reader is created on first use).
     *
     * @throws RepositoryException NOT_FOUND no such point; DAMAGED its manifest or root does not read
     */
    public static PointReader open(Repository repo, String pointId, BlobCache cache) throws RepositoryException {
        Point p = repo.point(pointId);
        Ref root;
        try {
            root = ManifestDescriptor.rootRef(p);
        } catch (IllegalArgumentException e) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, "point " + p.id() + ": " + e.getMessage());
        }
        return new PointReader(p, root, repo.reader().forHost(p.host()), cache);
    }

    /** The point's manifest. */
    public Point point() {
        return point;
    }

    /** The device's size in bytes. */
    public long sizeBytes() {
        return g.sizeBytes();
    }

    /** The chunk size in bytes (a power of two; the last chunk may be shorter). */
    public int chunkSizeBytes() {
        return g.chunkSizeBytes();
    }

    /** Number of chunks. */
    public int chunkCount() {
        return g.chunkCount();
    }

    /** The chunk that holds byte {@code offsetBytes} (which must be inside the device). */
    public int chunkIndex(long offsetBytes) {
        return (int) (offsetBytes / g.chunkSizeBytes());
    }

    /** Byte offset of chunk {@code chunkIndex}. */
    public long chunkOffsetBytes(int chunkIndex) {
        return g.chunkOffsetBytes(chunkIndex);
    }

    /** Length in bytes of chunk {@code chunkIndex}. */
    public int chunkLengthBytes(int chunkIndex) {
        return g.chunkLengthBytes(chunkIndex);
    }

    /**
     * Whether chunk {@code chunkIndex} is all zeros (a hole: stored nowhere). Reads only index nodes.
     *
     * @throws RepositoryException DAMAGED or IO reading a node on the way, naming the point and chunk
     */
    public boolean isHole(int chunkIndex) throws RepositoryException {
        return locate(chunkIndex).isHole();
    }

    /**
     * The content of chunk {@code chunkIndex}, checked against its name, or null when it is a hole
     * (all zeros). The array is shared with the cache: never modify it.
     *
     * @throws RepositoryException DAMAGED (a node or the chunk does not match its name, is missing,
     *                             or has the wrong length) or IO; the message names the point and chunk
     */
    public byte[] readChunk(int chunkIndex) throws RepositoryException {
        Ref ref = locate(chunkIndex);
        if (ref.isHole()) {
            return null;
        }
        int length = g.chunkLengthBytes(chunkIndex);
        byte[] raw;
        try {
            raw = cache.get(new BlobKey(ref.kind(), ref.hash()), length, () -> reader.read(ref));
        } catch (RepositoryException e) {
            throw inChunk(chunkIndex, e);
        }
        if (raw.length != length) {
            throw inChunk(chunkIndex, new RepositoryException(RepositoryException.Code.DAMAGED, ref + " is "
                    + raw.length + " bytes, the chunk is " + length));
        }
        return raw;
    }

    private Ref locate(int chunkIndex) throws RepositoryException {
        if (chunkIndex < 0 || chunkIndex >= g.chunkCount()) {
            throw new IllegalArgumentException("chunkIndex (" + chunkIndex + ") must be within 0.." + (g.chunkCount() - 1));
        }
        Ref ref = root;
        try {
            for (int level = chunksPerEntry.length - 1; level >= 0 && !ref.isHole(); level--) {
                long entry = chunkIndex / chunksPerEntry[level];
                long nodeIndex = entry / g.fanout();
                Ref node = ref;
                int lvl = level;
                int entries = g.entries(level, nodeIndex);
                Ref[] children = cache.get(new BlobKey(node.kind(), node.hash()), (long) entries * DECODED_REF_BYTES,
                        () -> IndexTree.children(g, lvl, nodeIndex, node, reader));
                ref = children[(int) (entry % g.fanout())];
            }
        } catch (RepositoryException e) {
            throw inChunk(chunkIndex, e);
        }
        return ref;
    }

    private RepositoryException inChunk(int chunkIndex, RepositoryException e) {
        return new RepositoryException(e.code(), "point " + point.id() + " (" + point.device() + ") chunk " + chunkIndex
                + " (offset " + g.chunkOffsetBytes(chunkIndex) + "): " + e.getMessage(), e);
    }
}
