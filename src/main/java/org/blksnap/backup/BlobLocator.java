package org.blksnap.backup;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Where else a blob is: every copy of every blob the repository's index objects list
 * ({@code index/*.idx}, {@link BlobIndexDescriptor}), by name; those of the point's host first. A ref's pack and offset are a hint
 * since format version 4 (gc moves live blobs out of mostly dead packs, and drops duplicate and
 * damaged copies); a reader that does not find the named blob there asks this for the other
 * copies. Loaded on the first miss only, so a restore whose refs all hold costs nothing more than
 * before; a miss the loaded copies cannot answer lists {@code index/} again and reads the index
 * objects that appeared since (gc writes the index object of the packs it made before it condemns
 * the old ones, so a reader that started before a repack finds the new copy).
 *
 * <p>Memory: one {@link Ref} (about 150 bytes) per blob copy the repository lists, once loaded.
 * Thread-safe: loading is serialized under this object's lock; the map is published by a volatile
 * write and never changed after, so lookups take no lock.
 */
final class BlobLocator {
    private final ObjectStore objects;
    /** Index objects read so far, by key. Guarded by this. */
    private final Set<String> loaded = new HashSet<>();
    /** Copies by name; replaced whole (copy on write) under this's lock. */
    private volatile Map<Sha256, List<Ref>> copies;

    BlobLocator(ObjectStore objects) {
        this.objects = objects;
    }

    /**
     * The copies of blob {@code hash} of kind {@code kind} the index objects list, other than
     * those in {@code tried} (pack and offset). When the index objects read so far list none, reads
     * the ones not read yet: first those of {@code host} (names {@code <host>+}, where gc lists
     * the blobs it moved out of that host's packs, and {@code upgrade-}, {@code gc-}), then, if
     * they do not answer either, every one.
     *
     * @param host the host of the point the blob belongs to, or null
     * @throws RepositoryException IO listing or reading the index objects
     */
    List<Ref> others(Sha256 hash, int kind, Set<Ref> tried, String host) throws RepositoryException {
        Map<Sha256, List<Ref>> seen = copies;
        List<Ref> found = filter(seen, hash, kind, tried);
        if (!found.isEmpty()) {
            return found;
        }
        if (host != null) {
            refresh(seen, List.of(host + "+", "upgrade-", "gc-"));
            seen = copies;
            found = filter(seen, hash, kind, tried);
            if (!found.isEmpty()) {
                return found;
            }
        }
        refresh(seen, List.of(""));
        return filter(copies, hash, kind, tried);
    }

    private static List<Ref> filter(Map<Sha256, List<Ref>> map, Sha256 hash, int kind, Set<Ref> tried) {
        if (map == null) {
            return List.of();
        }
        List<Ref> out = new ArrayList<>();
        for (Ref r : map.getOrDefault(hash, List.of())) {
            if (r.kind() == kind && !tried.contains(r.as(kind))) {
                out.add(r);
            }
        }
        return out;
    }

    /**
     * Reads the index objects of names {@code prefixes} not read yet, unless another thread did
     * since the caller looked ({@code seen}): readers that miss at once list {@code index/} once.
     */
    private synchronized void refresh(Map<Sha256, List<Ref>> seen, List<String> prefixes) throws RepositoryException {
        if (copies != seen) {
            return;
        }
        Map<Sha256, List<Ref>> next = copies == null ? new HashMap<>() : new HashMap<>(copies);
        boolean changed = copies == null;
        List<ObjectStore.Entry> listed = new ArrayList<>();
        for (String prefix : prefixes) {
            listed.addAll(objects.list(RepositoryLayout.INDEX + "/" + prefix));
        }
        for (ObjectStore.Entry e : listed) {
            if (!e.key().endsWith(RepositoryLayout.INDEX_SUFFIX) || loaded.contains(e.key())) {
                continue;
            }
            List<ChunkStore.SealedPack> packs;
            try {
                packs = BlobIndexDescriptor.decode(objects.describe(e.key()),
                        objects.get(e.key(), RepositoryLayout.MAX_INDEX_BYTES));
            } catch (RepositoryException x) {
                if (x.code() == RepositoryException.Code.IO || x.code() == RepositoryException.Code.NO_SPACE) {
                    throw x;
                }
                continue; // gone meanwhile (gc rewrote it: its successor is listed) or damaged: other copies may do
            }
            loaded.add(e.key());
            changed = true;
            for (ChunkStore.SealedPack p : packs) {
                for (byte[] entry : p.entries()) {
                    Ref r = entryRef(p.id(), entry);
                    if (r != null) {
                        List<Ref> list = next.computeIfAbsent(r.hash(), k -> new ArrayList<>(1));
                        if (!list.contains(r)) {
                            list.add(r);
                        }
                    }
                }
            }
        }
        if (changed) {
            copies = next;
        }
    }

    /** The ref of one trailer entry ({@link PackDescriptor}) of pack {@code pack}, or null for a malformed one. */
    static Ref entryRef(PackId pack, byte[] entry) {
        ByteBuffer b = ByteBuffer.wrap(entry);
        Sha256 hash = Sha256.read(b);
        int kind = b.get() & 0xff;
        long offset = b.getInt(PackDescriptor.ENTRY_BLOB_OFFSET_OFFSET) & 0xffffffffL;
        int length = b.getInt(PackDescriptor.ENTRY_BLOB_LENGTH_OFFSET);
        if (length < PackDescriptor.BLOB_HEADER_BYTES || length > PackDescriptor.MAX_BLOB_BYTES
                || (kind != NodeDescriptor.KIND_CHUNK && kind != NodeDescriptor.KIND_NODE)) {
            return null;
        }
        return new Ref(kind, hash, pack, offset, length);
    }
}
