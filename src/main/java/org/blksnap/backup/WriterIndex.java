package org.blksnap.backup;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;

/**
 * What a writer knows exists, to store each blob once: the refs of every blob listed in the
 * repository's index objects ({@code index/<host>+<point>.idx}, {@link BlobIndexDescriptor}; all of
 * them, or those of some name prefixes: one host's), less the packs a gc
 * has condemned ({@code gc/condemned-*}: a writer must not start to reference them) and the copies
 * verify recorded damaged ({@code damaged/*}: the content is then stored anew, which heals the
 * points that refer to the damaged copy, for readers find the new copy by name). One listing of
 * {@code index/} (one object per point, not per blob or pack) and a GET of each index object not in
 * the local cache ({@link #cacheDir}): an index object is immutable under its name, so a writer
 * reads each once per machine, and a long-lived process decodes each once
 * ({@link WriterIndexCache}). The disk cache tolerates concurrent writers (write, rename).
 */
final class WriterIndex {
    private WriterIndex() {
    }

    /**
     * What was loaded: the refs, counts for the record (index objects listed, read from the
     * repository rather than the disk cache, decoded by this load rather than kept from an earlier
     * one), the condemned packs and the damaged copies ({@link DamagedCopies#normal}) left out, and
     * the kept state the refs are (the writer adds what it commits: {@link WriterIndexCache.State#add}).
     */
    record Loaded(Map<Sha256, Ref> refs, int indexObjects, int fetched, int decoded, Set<PackId> condemned, Set<Ref> damaged,
                  WriterIndexCache.State state) {
    }

    /**
     * The local cache of index objects of the repository {@code repoId}: {@code $BLKSNAP_CACHE_DIR},
     * else {@code $XDG_CACHE_HOME/blksnap}, else {@code ~/.cache/blksnap}, then {@code /<repo id>/index}.
     */
    static Path cacheDir(String repoId) {
        String env = System.getenv("BLKSNAP_CACHE_DIR");
        Path base;
        if (env != null && !env.isBlank()) {
            base = Path.of(env);
        } else if (System.getenv("XDG_CACHE_HOME") != null && !System.getenv("XDG_CACHE_HOME").isBlank()) {
            base = Path.of(System.getenv("XDG_CACHE_HOME"), "blksnap");
        } else {
            base = Path.of(System.getProperty("user.home"), ".cache", "blksnap");
        }
        return base.resolve(repoId.replaceAll("[^0-9A-Za-z._-]", "_")).resolve("index");
    }

    /** The packs every condemned list names. */
    static Set<PackId> condemned(ObjectStore objects) throws RepositoryException {
        Set<PackId> packs = new HashSet<>();
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.CONDEMNED_PREFIX)) {
            try {
                packs.addAll(parseCondemned(objects.get(e.key(), RepositoryLayout.MAX_CONDEMNED_BYTES)));
            } catch (RepositoryException x) {
                if (x.code() != RepositoryException.Code.NOT_FOUND) {
                    throw x;
                }
            }
        }
        return packs;
    }

    static Set<PackId> parseCondemned(byte[] bytes) {
        Set<PackId> packs = new HashSet<>();
        for (String line : new String(bytes, StandardCharsets.UTF_8).split("\n")) {
            if (!line.isBlank()) {
                try {
                    packs.add(PackId.parse(line.trim()));
                } catch (IllegalArgumentException e) {
                    // not a pack id: ignored
                }
            }
        }
        return packs;
    }

    static byte[] encodeCondemned(Set<PackId> packs) {
        StringBuilder sb = new StringBuilder();
        packs.stream().map(PackId::toString).sorted().forEach(p -> sb.append(p).append('\n'));
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    /**
     * Loads the refs, growing this process's kept state of the repository when it may
     * ({@link WriterIndexCache#PROCESS}). Call after the writer's session marker is written: a gc
     * that condemns packs after this listing sees the session and waits for it.
     *
     * @return the refs (read only: shared with later loads of this process, which may add to them)
     */
    static Loaded load(ObjectStore objects, String repoId, List<String> namePrefixes, Consumer<String> warn)
            throws RepositoryException {
        return load(objects, repoId, namePrefixes, warn, WriterIndexCache.PROCESS);
    }

    static Loaded load(ObjectStore objects, String repoId, List<String> namePrefixes, Consumer<String> warn,
                       WriterIndexCache memory) throws RepositoryException {
        Set<PackId> condemned = condemned(objects);
        Set<Ref> damaged = DamagedCopies.load(objects);
        List<ObjectStore.Entry> entries = new java.util.ArrayList<>();
        for (String prefix : namePrefixes) {
            entries.addAll(objects.list(RepositoryLayout.INDEX + "/" + prefix));
        }
        Set<String> present = new HashSet<>();
        for (ObjectStore.Entry e : entries) {
            if (e.key().endsWith(RepositoryLayout.INDEX_SUFFIX)) {
                present.add(name(e));
            }
        }
        WriterIndexCache.State state = memory.stateFor(WriterIndexCache.key(objects.location(), repoId, namePrefixes),
                condemned, damaged, present);
        Path cache = cacheDir(repoId);
        boolean cacheUsable = true;
        try {
            Files.createDirectories(cache);
        } catch (IOException e) {
            cacheUsable = false;
            warn.accept("cannot use the index cache " + cache + " (" + e.getMessage() + "); index objects are read from "
                    + objects.location());
        }
        int fetched = 0;
        int decoded = 0;
        boolean fresh;
        synchronized (state) {
            fresh = state.names.isEmpty();
            for (ObjectStore.Entry e : entries) {
                String name = name(e);
                if (!present.contains(name) || state.names.contains(name)) {
                    continue;
                }
                byte[] bytes = null;
                Path cached = cache.resolve(name);
                if (cacheUsable) {
                    try {
                        if (Files.size(cached) == e.sizeBytes()) {
                            bytes = Files.readAllBytes(cached);
                        }
                    } catch (IOException x) {
                        // not cached
                    }
                }
                if (bytes == null) {
                    try {
                        bytes = objects.get(e.key(), RepositoryLayout.MAX_INDEX_BYTES);
                    } catch (RepositoryException x) {
                        if (x.code() == RepositoryException.Code.NOT_FOUND) {
                            continue; // gc replaced it meanwhile: its successor may be listed or not; either is safe
                        }
                        if (x.code() == RepositoryException.Code.DAMAGED) {
                            warn.accept(x.getMessage() + "; its blobs are not reused");
                            continue;
                        }
                        throw x;
                    }
                    fetched++;
                    if (cacheUsable) {
                        try {
                            Path tmp = cache.resolve(name + "." + ProcessHandle.current().pid() + ".tmp");
                            Files.write(tmp, bytes);
                            Files.move(tmp, cached, java.nio.file.StandardCopyOption.ATOMIC_MOVE,
                                    java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                        } catch (IOException x) {
                            // the cache is an optimization
                        }
                    }
                }
                List<ChunkStore.SealedPack> packs;
                try {
                    packs = BlobIndexDescriptor.decode(objects.describe(e.key()), bytes);
                } catch (RepositoryException x) {
                    warn.accept(x.getMessage() + "; its blobs are not reused");
                    continue;
                }
                state.add(name, packs);
                decoded++;
            }
        }
        if (cacheUsable && fresh) {
            try (var s = Files.list(cache)) {
                for (Path p : s.toList()) {
                    String n = p.getFileName().toString();
                    if (!present.contains(n) && n.endsWith(RepositoryLayout.INDEX_SUFFIX)
                            && namePrefixes.stream().anyMatch(n::startsWith)) {
                        Files.deleteIfExists(p); // replaced or removed by gc
                    }
                }
            } catch (IOException x) {
                // the cache is an optimization
            }
        }
        return new Loaded(java.util.Collections.unmodifiableMap(state.refs), present.size(), fetched, decoded, condemned, damaged,
                state);
    }

    private static String name(ObjectStore.Entry e) {
        return e.key().substring(e.key().lastIndexOf('/') + 1);
    }
}
