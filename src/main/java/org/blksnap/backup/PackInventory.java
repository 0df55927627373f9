package org.blksnap.backup;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;

/**
 * What gc knows of the packs: which exist, which blobs each holds (from the index objects, or
 * from the pack's own trailer for a pack no index object lists: a killed backup's, or one a
 * backup sealed and has not committed yet), and every copy of every blob. Index objects and
 * trailers are immutable under their names, so each is read once per gc run however often the
 * inventory is taken. Memory: one {@link Ref} per blob copy. Not thread-safe (gc's one thread).
 */
final class PackInventory {
    private final ObjectStore objects;
    private final Consumer<String> warn;
    private final Map<String, List<ChunkStore.SealedPack>> indexObjects = new HashMap<>();
    /** Entries of packs read from their trailers; an empty list: the trailer is damaged (entries unknown). */
    private final Map<PackId, List<Ref>> trailers = new HashMap<>();

    PackInventory(ObjectStore objects, Consumer<String> warn) {
        this.objects = objects;
        this.warn = warn;
    }

    /**
     * The packs at one moment.
     *
     * @param packs   every pack of the store, with its size
     * @param entries the blobs of each pack whose index object or trailer reads (absent: unknown)
     * @param indexed the packs an index object lists: copies in them are what readers find by name
     * @param origin  of an indexed pack, the name prefix of its index object ({@code host+},
     *                {@code upgrade-}), so blobs moved out of it are listed where the same writers look
     * @param copies  every copy of every blob in {@code entries}, by name
     */
    record Snapshot(Map<PackId, ObjectStore.Entry> packs, Map<PackId, List<Ref>> entries, Set<PackId> indexed,
                    Map<PackId, String> origin, Map<Sha256, List<Ref>> copies) {
        /** Bytes of the blobs (headers and payloads) in pack {@code id}: its size less header, trailer and footer. */
        long blobBytes(PackId id) {
            long sum = 0;
            for (Ref r : entries.getOrDefault(id, List.of())) {
                sum += r.lengthBytes();
            }
            return sum;
        }
    }

    /** The name prefix of index object {@code key}: {@code host+}, {@code upgrade-}, or "" (gc's own of unknown origin). */
    static String origin(String key) {
        String name = key.substring(key.lastIndexOf('/') + 1);
        int plus = name.indexOf('+');
        if (plus > 0) {
            return name.substring(0, plus + 1);
        }
        return name.startsWith("upgrade-") ? "upgrade-" : "";
    }

    Snapshot take() throws RepositoryException {
        Map<PackId, ObjectStore.Entry> packs = new HashMap<>();
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.PACKS + "/")) {
            if (e.key().endsWith(PackDescriptor.SUFFIX)) {
                packs.put(PackScan.packId(e.key()), e);
            }
        }
        Map<PackId, List<Ref>> entries = new HashMap<>();
        Set<PackId> indexed = new HashSet<>();
        Map<PackId, String> origin = new HashMap<>();
        Set<String> present = new HashSet<>();
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.INDEX + "/")) {
            if (!e.key().endsWith(RepositoryLayout.INDEX_SUFFIX)) {
                continue;
            }
            String cacheKey = e.key() + " " + e.sizeBytes();
            present.add(cacheKey);
            List<ChunkStore.SealedPack> listed = indexObjects.get(cacheKey);
            if (listed == null) {
                try {
                    listed = BlobIndexDescriptor.decode(objects.describe(e.key()),
                            objects.get(e.key(), RepositoryLayout.MAX_INDEX_BYTES));
                } catch (RepositoryException x) {
                    if (x.code() == RepositoryException.Code.IO || x.code() == RepositoryException.Code.NO_SPACE) {
                        throw x;
                    }
                    if (x.code() == RepositoryException.Code.DAMAGED) {
                        warn.accept("gc: " + x.getMessage() + "; the packs it lists count by their trailers");
                    }
                    continue;
                }
                indexObjects.put(cacheKey, listed);
            }
            for (ChunkStore.SealedPack p : listed) {
                if (!packs.containsKey(p.id())) {
                    continue;
                }
                indexed.add(p.id());
                origin.putIfAbsent(p.id(), origin(e.key()));
                if (!entries.containsKey(p.id())) {
                    List<Ref> refs = new ArrayList<>(p.entries().size());
                    for (byte[] entry : p.entries()) {
                        Ref r = BlobLocator.entryRef(p.id(), entry);
                        if (r != null) {
                            refs.add(r);
                        }
                    }
                    entries.put(p.id(), refs);
                }
            }
        }
        indexObjects.keySet().retainAll(present);
        for (Map.Entry<PackId, ObjectStore.Entry> p : packs.entrySet()) {
            if (entries.containsKey(p.getKey())) {
                continue;
            }
            List<Ref> refs = trailers.get(p.getKey());
            if (refs == null) {
                Map<Sha256, Ref> read = new HashMap<>();
                try {
                    PackScan.readTrailer(objects, p.getValue().key(), p.getValue().sizeBytes(), read);
                    refs = new ArrayList<>(read.values());
                } catch (RepositoryException x) {
                    if (x.code() == RepositoryException.Code.NOT_FOUND) {
                        continue;
                    }
                    if (x.code() != RepositoryException.Code.DAMAGED) {
                        throw x;
                    }
                    refs = List.of();
                }
                trailers.put(p.getKey(), refs);
            }
            if (!refs.isEmpty()) {
                entries.put(p.getKey(), refs);
            }
        }
        Map<Sha256, List<Ref>> copies = new HashMap<>();
        for (List<Ref> refs : entries.values()) {
            for (Ref r : refs) {
                copies.computeIfAbsent(r.hash(), k -> new ArrayList<>(1)).add(r);
            }
        }
        return new Snapshot(packs, entries, indexed, origin, copies);
    }
}
