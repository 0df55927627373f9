package org.blksnap.backup;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Checks points: each manifest reads and matches its checksum; every node and chunk its index
 * references is read, decompressed and re-hashed against its name (each distinct blob once, however
 * many points use it); a damaged node is reported and its subtree skipped. Every problem lists the
 * points it breaks. A blob whose copy at the ref's place is damaged is read from another good copy
 * when the repository has one ({@link BlobReader}); either way every damaged copy met is recorded
 * ({@link DamagedCopies}: writers then store the content anew instead of referring to it, and gc
 * drops the copy), unless the repository cannot be written (a read-only store: then the report
 * says so). Not thread-safe: {@link #run} once.
 */
final class Verify {
    private final Repository repo;
    private final String pointId;
    private final Map<Sha256, String> bad = new LinkedHashMap<>();
    private final Map<Sha256, Ref> badRefs = new LinkedHashMap<>();
    private final Map<Sha256, Set<String>> badUsers = new LinkedHashMap<>();
    private final Set<Sha256> good = new java.util.HashSet<>();
    /** Damaged copies met, by blob name; a good copy elsewhere may have answered the read. */
    private final Map<Sha256, Set<Ref>> damagedCopies = new LinkedHashMap<>();
    private final Map<Ref, String> damagedWhy = new LinkedHashMap<>();
    /** The reader for the blobs of the point being walked ({@link BlobReader#forHost}). */
    private BlobReader reader;
    private final BlobReader.DamageSink sink = (copy, why) -> {
        damagedCopies.computeIfAbsent(copy.hash(), k -> new LinkedHashSet<>()).add(copy);
        damagedWhy.putIfAbsent(copy, why.getMessage());
    };
    private long blobs;
    private long bytes;

    Verify(Repository repo, String pointId) {
        this.repo = repo;
        this.pointId = pointId;
    }

    Repository.VerifyReport run() throws RepositoryException {
        List<Repository.Problem> problems = new ArrayList<>();
        List<Point> points;
        if (pointId != null) {
            points = List.of(repo.point(pointId));
        } else {
            Repository.Scan scan = repo.scan();
            for (RepositoryException e : scan.damaged()) {
                problems.add(new Repository.Problem("manifest", e.getMessage(), List.of()));
            }
            points = scan.points();
        }
        for (Point p : points) {
            Ref root;
            try {
                root = ManifestDescriptor.rootRef(p);
            } catch (IllegalArgumentException e) {
                problems.add(new Repository.Problem("manifest of " + p.id(), e.getMessage(), List.of(p.id())));
                continue;
            }
            reader = repo.reader().forHost(p.host());
            walk(p, p.geometry(), p.geometry().levels() - 1, 0, root);
        }
        for (Map.Entry<Sha256, String> e : bad.entrySet()) {
            problems.add(new Repository.Problem(badRefs.get(e.getKey()).toString(), e.getValue(),
                    List.copyOf(badUsers.get(e.getKey()))));
        }
        List<String> recorded = new ArrayList<>();
        for (Map.Entry<Sha256, Set<Ref>> e : damagedCopies.entrySet()) {
            String note;
            try {
                note = DamagedCopies.record(repo.objects(), e.getKey(), e.getValue()) ? "recorded" : "recorded before";
            } catch (RepositoryException x) {
                note = "not recorded: " + x.getMessage();
            }
            for (Ref copy : e.getValue()) {
                recorded.add(damagedWhy.get(copy) + " (" + (bad.containsKey(e.getKey()) ? "no good copy" : "a good copy "
                        + "elsewhere answered") + "; " + note + ")");
            }
        }
        return new Repository.VerifyReport(points.size(), blobs, bytes, problems, recorded);
    }

    private void walk(Point p, Geometry g, int level, long nodeIndex, Ref ref) throws RepositoryException {
        if (ref.isHole()) {
            return;
        }
        if (bad.containsKey(ref.hash())) {
            badUsers.get(ref.hash()).add(p.id());
            return;
        }
        if (level >= 0 && ref.kind() == NodeDescriptor.KIND_NODE) {
            Ref[] children;
            try {
                children = IndexTree.children(g, level, nodeIndex, ref, reader, sink);
            } catch (RepositoryException e) {
                if (e.code() != RepositoryException.Code.DAMAGED) {
                    throw e;
                }
                markBad(p, ref, e.getMessage());
                return;
            }
            if (good.add(ref.hash())) {
                blobs++;
                bytes += NodeDescriptor.nodeBytes(children.length);
            }
            for (int e = 0; e < children.length; e++) {
                if (level == 0) {
                    check(p, g, (int) (nodeIndex * g.fanout() + e), children[e]);
                } else {
                    walk(p, g, level - 1, nodeIndex * g.fanout() + e, children[e]);
                }
            }
            return;
        }
        markBad(p, ref, "stands where a node of level " + level + " belongs");
    }

    private void check(Point p, Geometry g, int chunkIndex, Ref ref) throws RepositoryException {
        if (ref.isHole()) {
            return;
        }
        if (bad.containsKey(ref.hash())) {
            badUsers.get(ref.hash()).add(p.id());
            return;
        }
        if (good.contains(ref.hash())) {
            return;
        }
        try {
            byte[] raw = reader.read(ref, sink);
            if (raw.length != g.chunkLengthBytes(chunkIndex)) {
                markBad(p, ref, "is " + raw.length + " bytes where chunk " + chunkIndex + " is " + g.chunkLengthBytes(chunkIndex));
                return;
            }
            good.add(ref.hash());
            blobs++;
            bytes += raw.length;
        } catch (RepositoryException e) {
            if (e.code() != RepositoryException.Code.DAMAGED) {
                throw e;
            }
            markBad(p, ref, e.getMessage().startsWith(ref.toString() + ": ")
                    ? e.getMessage().substring(ref.toString().length() + 2) : e.getMessage());
        }
    }

    private void markBad(Point p, Ref ref, String why) {
        bad.putIfAbsent(ref.hash(), why);
        badRefs.putIfAbsent(ref.hash(), ref);
        badUsers.computeIfAbsent(ref.hash(), k -> new LinkedHashSet<>()).add(p.id());
    }
}
