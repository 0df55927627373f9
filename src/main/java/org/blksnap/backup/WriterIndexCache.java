package org.blksnap.backup;

import java.lang.ref.SoftReference;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The writer's deduplication index ({@link WriterIndex}) kept in memory between the backups of one
 * process, so that a long-lived process (the daemon's resident backup agent) reads and decodes only
 * the index objects that appeared since its last backup of the repository, instead of every one
 * (65 k refs for a 4 GiB device: 0.1-0.3 s and most of the garbage of a small incremental).
 *
 * <p>A kept state is reused only when it is exactly what a fresh load would build, given that an
 * index object is immutable under its name: the repository's condemned packs and damaged copies are
 * the same as when the state was built, and every index object the state holds is still listed.
 * The new objects' refs are then added to it. Anything else (a gc condemned or removed packs and
 * replaced index objects, verify recorded a damaged copy, a point's index object was deleted)
 * builds a new state, as a fresh process would. The refs map only ever gains refs of committed
 * index objects, so a store still reading a state another load grows sees only valid refs.
 *
 * <p>States are held through {@link SoftReference}s: under heap pressure the collector drops them
 * and the next backup loads afresh. Thread-safe: a state is grown under its own lock; two loads of
 * one repository at once serialize on it.
 */
final class WriterIndexCache {
    /** The process's cache. */
    static final WriterIndexCache PROCESS = new WriterIndexCache();

    private final Map<String, SoftReference<State>> states = new ConcurrentHashMap<>();

    /**
     * One repository's loaded refs and what they were built from. {@link #refs} is read without the
     * lock (a concurrent map); {@link #names} only under {@code this}.
     */
    static final class State {
        final Map<Sha256, Ref> refs = new ConcurrentHashMap<>();
        final Set<PackId> condemned;
        final Set<Ref> damaged;
        /** The index objects whose refs are in {@link #refs}. Guarded by this. */
        final Set<String> names = new HashSet<>();

        State(Set<PackId> condemned, Set<Ref> damaged) {
            this.condemned = Set.copyOf(condemned);
            this.damaged = Set.copyOf(damaged);
        }

        /**
         * Adds the refs of the packs an index object lists, less the condemned packs and the
         * damaged copies this state was built with, unless that object's refs are in already. A
         * load adds the objects it decodes; a writer of this process adds the one it has just
         * committed (written durably, its packs durable before it), as a later load would decode
         * it, so the next backup does not decode what the previous one wrote (a damaged record
         * made later changes the damaged set, and the next load starts afresh).
         *
         * @param indexObjectName the object's name ({@code <host>+<point id>.idx})
         */
        synchronized void add(String indexObjectName, java.util.List<ChunkStore.SealedPack> packs) {
            if (names.contains(indexObjectName)) {
                return;
            }
            for (ChunkStore.SealedPack p : packs) {
                if (!condemned.contains(p.id())) {
                    BlobIndexDescriptor.addRefs(p, refs, damaged);
                }
            }
            names.add(indexObjectName); // after its refs: a name in the set has all of them in the map
        }

        /** Whether a load that saw these condemned packs, damaged copies and index objects may grow this state. */
        synchronized boolean reusableFor(Set<PackId> condemnedNow, Set<Ref> damagedNow, Set<String> listed) {
            return condemned.equals(condemnedNow) && damaged.equals(damagedNow) && listed.containsAll(names);
        }
    }

    /**
     * The key of a repository's state: where it is, its id (a copied repository directory has the
     * id of its original) and the index name prefixes a writer loads (its dedup scope).
     */
    static String key(String location, String repoId, java.util.List<String> namePrefixes) {
        return location + "\n" + repoId + "\n" + String.join("\n", namePrefixes);
    }

    /**
     * The kept state of {@code key} if a load that saw these condemned packs, damaged copies and
     * index objects may grow it, else a new empty state, kept from now on in its place.
     */
    State stateFor(String key, Set<PackId> condemned, Set<Ref> damaged, Set<String> listed) {
        SoftReference<State> held = states.get(key);
        State s = held == null ? null : held.get();
        if (s != null && s.reusableFor(condemned, damaged, listed)) {
            return s;
        }
        State fresh = new State(condemned, damaged);
        states.put(key, new SoftReference<>(fresh));
        return fresh;
    }
}
