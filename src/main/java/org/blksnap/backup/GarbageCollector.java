package org.blksnap.backup;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Removes packs no point uses: marks every pack that holds a node or chunk of any point's tree,
 * then deletes the other packs whose modification time is older than the grace period. Runs under
 * the writer lock, so no backup writes meanwhile; the grace period also keeps packs a writer that
 * does not honour the lock (another host on a network filesystem) may be about to reference. A pack
 * that some point uses is kept whole: the blobs in it that no point uses stay until format version
 * 2 can move blobs (refs carry their pack and offset). Not thread-safe: {@link #run} once.
 */
final class GarbageCollector {
    private final Repository repo;
    private final Duration grace;
    private final boolean dryRun;

    GarbageCollector(Repository repo, Duration grace, boolean dryRun) {
        this.repo = repo;
        this.grace = grace;
        this.dryRun = dryRun;
    }

    Repository.GcResult run() throws RepositoryException {
        Set<PackId> used = new HashSet<>();
        List<Point> points = repo.points();
        for (Point p : points) {
            Ref root = ManifestDescriptor.rootRef(p);
            if (!root.isHole()) {
                used.add(root.pack());
            }
            IndexTree.walk(p.geometry(), root, repo.reader(), new IndexTree.Visitor() {
                @Override
                public void hole(long firstChunk, long chunkCount) {
                }

                @Override
                public void chunk(int chunkIndex, Ref ref) {
                    used.add(ref.pack());
                }

                @Override
                public void node(Ref ref) {
                    used.add(ref.pack());
                }
            });
        }
        List<String> removed = new ArrayList<>();
        long removedBytes = 0;
        int kept = 0;
        int young = 0;
        Instant cutoff = Instant.now().minus(grace);
        try (DirectoryStream<Path> packs = Files.newDirectoryStream(repo.packsDir(), "*" + PackDescriptor.SUFFIX)) {
            for (Path pack : packs) {
                String name = pack.getFileName().toString();
                PackId id;
                try {
                    id = PackId.parse(name.substring(0, name.length() - PackDescriptor.SUFFIX.length()));
                } catch (IllegalArgumentException e) {
                    kept++;
                    continue; // not ours to remove
                }
                if (used.contains(id)) {
                    kept++;
                } else if (Files.getLastModifiedTime(pack).toInstant().isAfter(cutoff)) {
                    young++;
                } else {
                    removedBytes += Files.size(pack);
                    removed.add(name);
                    if (!dryRun) {
                        Files.delete(pack);
                    }
                }
            }
            if (!dryRun && !removed.isEmpty()) {
                Durable.fsyncDirectory(repo.packsDir());
            }
        } catch (IOException e) {
            throw RepositoryException.io("cannot sweep " + repo.packsDir(), e);
        }
        return new Repository.GcResult(points.size(), kept, young, removed, removedBytes, dryRun);
    }
}
