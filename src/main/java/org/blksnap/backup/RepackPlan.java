package org.blksnap.backup;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What gc's condemn phase does with each pack, given the live blobs (every blob a point's tree
 * names) and the copies the inventory knows. For each live blob one copy is kept: a copy is a
 * candidate when its pack exists, is not condemned already and the copy is not recorded damaged
 * (a damaged one only while no other is left); the ref's own place is preferred (restores then read where the tree says), else a copy an index
 * object lists. A pack none of whose blobs is a kept copy is unused; a pack whose kept copies are
 * less than {@code repackBelow} of its blob bytes is repacked (its kept copies move to new packs),
 * unless another pack that stays holds a candidate copy, which is then kept instead. A pack whose
 * blobs are unknown (damaged trailer, in no index object) is unused only when no live ref names it.
 * Stateless.
 */
final class RepackPlan {
    private RepackPlan() {
    }

    /**
     * @param unused      packs to condemn as they are
     * @param repack      packs to condemn once their kept copies (by pack, in offset order) are moved
     * @param bytesToMove stored bytes of those kept copies
     * @param relocates   whether condemning these packs moves a blob some ref names, or drops a
     *                    copy of a live blob: the repository must be format version 4 first
     */
    record Plan(Set<PackId> unused, Map<PackId, List<Ref>> repack, long bytesToMove, boolean relocates) {
    }

    /**
     * @param live        by name, one ref to each blob the points' trees name
     * @param refPacks    the packs those trees' refs name
     * @param condemned   packs on condemned lists already (the sweep decides about them)
     * @param damaged     recorded damaged copies ({@link DamagedCopies#normal})
     * @param repackBelow a pack whose kept copies are less than this fraction of its blob bytes is
     *                    repacked: 0 never, 0.5 half, 1 any pack with a dead byte
     * @param mayRelocate false keeps every ref exact (a version 2 or 3 repository that gc must not
     *                    make version 4): only packs no ref names go, as before version 4
     */
    static Plan plan(Map<Sha256, Ref> live, Set<PackId> refPacks, PackInventory.Snapshot inv, Set<PackId> condemned,
                     Set<Ref> damaged, double repackBelow, boolean mayRelocate) {
        if (!mayRelocate) {
            Set<PackId> unused = new HashSet<>();
            for (PackId id : inv.packs().keySet()) {
                if (!condemned.contains(id) && !refPacks.contains(id)) {
                    unused.add(id);
                }
            }
            return new Plan(unused, Map.of(), 0, false);
        }
        Map<Sha256, Ref> kept = new HashMap<>();
        for (Map.Entry<Sha256, Ref> l : live.entrySet()) {
            List<Ref> cands = candidates(l.getValue(), inv, condemned, damaged);
            if (cands.isEmpty()) {
                continue; // only condemned or damaged copies: the sweep keeps a condemned one, nothing else to do
            }
            Ref choice = null;
            for (Ref c : cands) {
                if (c.pack().equals(l.getValue().pack()) && c.offsetBytes() == l.getValue().offsetBytes()) {
                    choice = c;
                }
            }
            if (choice == null) {
                choice = cands.stream().filter(c -> inv.indexed().contains(c.pack())).findFirst().orElse(cands.getFirst());
            }
            kept.put(l.getKey(), choice);
        }
        Set<PackId> repack = repackSet(kept, inv, condemned, repackBelow);
        // a blob of a pack to repack that a pack which stays holds too is kept there: nothing to move
        Map<PackId, Long> liveBytes = liveBytes(kept);
        for (Map.Entry<Sha256, Ref> k : kept.entrySet()) {
            if (!repack.contains(k.getValue().pack())) {
                continue;
            }
            Ref better = null;
            for (Ref c : candidates(live.get(k.getKey()), inv, condemned, damaged)) {
                if (!repack.contains(c.pack()) && inv.indexed().contains(c.pack())
                        && (better == null || liveBytes.getOrDefault(c.pack(), 0L) > liveBytes.getOrDefault(better.pack(), 0L))) {
                    better = c;
                }
            }
            if (better != null) {
                k.setValue(better);
            }
        }
        repack = repackSet(kept, inv, condemned, repackBelow);
        liveBytes = liveBytes(kept);
        Set<PackId> unused = new HashSet<>();
        for (PackId id : inv.packs().keySet()) {
            if (condemned.contains(id) || liveBytes.containsKey(id)) {
                continue;
            }
            if (inv.entries().containsKey(id) || !refPacks.contains(id)) {
                unused.add(id);
            }
        }
        Map<PackId, List<Ref>> moves = new HashMap<>();
        long bytes = 0;
        for (Ref k : kept.values()) {
            if (repack.contains(k.pack())) {
                moves.computeIfAbsent(k.pack(), x -> new ArrayList<>()).add(k);
                bytes += k.lengthBytes();
            }
        }
        for (List<Ref> l : moves.values()) {
            l.sort(Comparator.comparingLong(Ref::offsetBytes));
        }
        boolean relocates = false;
        for (PackId id : unused) {
            relocates |= refPacks.contains(id) || holdsLive(inv.entries().get(id), live);
        }
        relocates |= !moves.isEmpty();
        return new Plan(unused, moves, bytes, relocates);
    }

    static boolean holdsLive(List<Ref> entries, Map<Sha256, Ref> live) {
        if (entries == null) {
            return false;
        }
        for (Ref r : entries) {
            if (live.containsKey(r.hash())) {
                return true;
            }
        }
        return false;
    }

    /**
     * The copies of a live blob that may be kept: in packs not condemned, not recorded damaged; when
     * every such copy is recorded damaged, those (a damaged copy is not dropped while it is the
     * only one: its pack stays, and a repack of it stops at the copy, which does not read).
     */
    private static List<Ref> candidates(Ref live, PackInventory.Snapshot inv, Set<PackId> condemned, Set<Ref> damaged) {
        List<Ref> good = new ArrayList<>();
        List<Ref> bad = new ArrayList<>();
        for (Ref c : inv.copies().getOrDefault(live.hash(), List.of())) {
            if (c.kind() == live.kind() && !condemned.contains(c.pack())) {
                (damaged.contains(DamagedCopies.normal(c)) ? bad : good).add(c);
            }
        }
        return good.isEmpty() ? bad : good;
    }

    private static Map<PackId, Long> liveBytes(Map<Sha256, Ref> kept) {
        Map<PackId, Long> bytes = new HashMap<>();
        for (Ref k : kept.values()) {
            bytes.merge(k.pack(), (long) k.lengthBytes(), Long::sum);
        }
        return bytes;
    }

    private static Set<PackId> repackSet(Map<Sha256, Ref> kept, PackInventory.Snapshot inv, Set<PackId> condemned,
                                         double repackBelow) {
        Set<PackId> repack = new HashSet<>();
        for (Map.Entry<PackId, Long> e : liveBytes(kept).entrySet()) {
            long blobBytes = inv.blobBytes(e.getKey());
            if (!condemned.contains(e.getKey()) && e.getValue() < repackBelow * blobBytes) {
                repack.add(e.getKey());
            }
        }
        return repack;
    }
}
