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
 * ({@code index/*.idx}, {@link BlobIndexDescriptor}), by name. A ref's pack and offset are a hint
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
     * those in {@code tried} (pack and offset); loads the index objects on the first call, and
     * reads the ones new since when none is left to try.
     *
     * @throws RepositoryException IO listing or reading the index objects
     */
    List<Ref> others(Sha256 hash, int kind, Set<Ref> tried) throws RepositoryException {
        Map<Sha256, List<Ref>> seen = copies;
        List<Ref> found = filter(seen, hash, kind, tried);
        if (!found.isEmpty()) {
            return found;
        }
        refresh(seen);
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
     * Reads the index objects not read yet (all of them, the first time), unless another thread
     * did since the caller looked ({@code seen}): readers that miss at once list {@code index/} once.
     */
    private synchronized void refresh(Map<Sha256, List<Ref>> seen) throws RepositoryException {
        if (copies != seen) {
            return;
        }
        Map<Sha256, List<Ref>> next = copies == null ? new HashMap<>() : new HashMap<>(copies);
        boolean changed = copies == null;
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.INDEX + "/")) {
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
