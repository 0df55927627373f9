package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** gc's plan of each pack, on inventories built in memory: which copy of a live blob is kept, what moves, what goes. */
class RepackPlanTest {
    static final int BLOB = 1000;

    /** Packs of named blobs, each {@link #BLOB} bytes, in order. */
    private final Map<PackId, List<Ref>> packs = new HashMap<>();
    private final Map<Sha256, Ref> live = new HashMap<>();
    private final Set<PackId> refPacks = new HashSet<>();
    private final Set<PackId> indexed = new HashSet<>();

    private static Sha256 name(String s) {
        return Sha256.of(s.getBytes(StandardCharsets.US_ASCII));
    }

    private PackId pack(String... blobs) {
        PackId id = PackId.random();
        List<Ref> refs = new ArrayList<>();
        for (int i = 0; i < blobs.length; i++) {
            refs.add(new Ref(NodeDescriptor.KIND_CHUNK, name(blobs[i]), id, PackDescriptor.HEADER_BYTES + (long) i * BLOB, BLOB));
        }
        packs.put(id, refs);
        indexed.add(id);
        return id;
    }

    private Ref copy(PackId pack, String blob) {
        return packs.get(pack).stream().filter(r -> r.hash().equals(name(blob))).findFirst().orElseThrow();
    }

    /** A point's tree names {@code blob} at its copy in {@code pack}. */
    private void live(PackId pack, String blob) {
        Ref r = copy(pack, blob);
        live.putIfAbsent(r.hash(), r);
        refPacks.add(pack);
    }

    private PackInventory.Snapshot inventory() {
        Map<PackId, ObjectStore.Entry> entries = new HashMap<>();
        Map<Sha256, List<Ref>> copies = new HashMap<>();
        for (Map.Entry<PackId, List<Ref>> p : packs.entrySet()) {
            entries.put(p.getKey(), new ObjectStore.Entry(RepositoryLayout.packKey(p.getKey()),
                    PackDescriptor.HEADER_BYTES + (long) p.getValue().size() * (BLOB + PackDescriptor.ENTRY_BYTES)
                            + PackDescriptor.FOOTER_BYTES, Instant.EPOCH));
            for (Ref r : p.getValue()) {
                copies.computeIfAbsent(r.hash(), k -> new ArrayList<>()).add(r);
            }
        }
        Map<PackId, String> origin = new HashMap<>();
        indexed.forEach(id -> origin.put(id, "h1+"));
        return new PackInventory.Snapshot(entries, new HashMap<>(packs), indexed, origin, copies);
    }

    private RepackPlan.Plan plan(double repackBelow, Set<Ref> damaged, boolean mayRelocate) {
        return RepackPlan.plan(live, refPacks, inventory(), Set.of(), damaged, repackBelow, mayRelocate);
    }

    @Test
    void aPackLessThanHalfLiveIsRepackedOneWithNoLiveBlobIsUnusedAndOneMostlyLiveStays() {
        PackId quarter = pack("a", "b", "c", "d");
        PackId most = pack("e", "f", "g", "h");
        PackId dead = pack("i", "j");
        live(quarter, "a");
        live(most, "e");
        live(most, "f");
        live(most, "g");
        RepackPlan.Plan p = plan(0.5, Set.of(), true);
        assertThat(p.repack()).containsOnlyKeys(quarter);
        assertThat(p.repack().get(quarter)).containsExactly(copy(quarter, "a"));
        assertThat(p.bytesToMove()).isEqualTo(BLOB);
        assertThat(p.unused()).containsExactly(dead);
        assertThat(p.relocates()).isTrue();
        RepackPlan.Plan all = plan(1.0, Set.of(), true);
        assertThat(all.repack()).as("any dead byte, with repack-all").containsOnlyKeys(quarter, most);
        assertThat(all.bytesToMove()).isEqualTo(4L * BLOB);
    }

    @Test
    void aLiveBlobThatAPackWhichStaysHoldsTooIsKeptThereAndNotCopied() {
        PackId old = pack("x", "dead1", "dead2", "dead3");
        PackId full = pack("x", "y");
        live(old, "x"); // the tree names the copy in the old pack
        live(full, "y");
        RepackPlan.Plan p = plan(0.5, Set.of(), true);
        assertThat(p.repack()).isEmpty();
        assertThat(p.bytesToMove()).isZero();
        assertThat(p.unused()).containsExactly(old);
        assertThat(p.relocates()).as("a ref names the old pack: readers must find x by name").isTrue();
    }

    @Test
    void aDamagedCopyIsNotKeptWhenAGoodOneExistsButIsWhenItIsTheOnlyOne() {
        PackId bad = pack("x", "z");
        PackId good = pack("x", "y");
        live(bad, "x");
        live(bad, "z");
        live(good, "y");
        RepackPlan.Plan p = plan(0.5, Set.of(DamagedCopies.normal(copy(bad, "x"))), true);
        assertThat(p.repack()).as("z is half of the pack").isEmpty();
        RepackPlan.Plan all = plan(1.0, Set.of(DamagedCopies.normal(copy(bad, "x"))), true);
        assertThat(all.repack()).containsOnlyKeys(bad);
        assertThat(all.repack().get(bad)).as("z moves; the damaged x stays behind").containsExactly(copy(bad, "z"));

        PackId only = pack("w", "v");
        live(only, "w");
        live(only, "v");
        RepackPlan.Plan kept = plan(1.0, Set.of(DamagedCopies.normal(copy(only, "w"))), true);
        assertThat(kept.unused()).doesNotContain(only);
        assertThat(kept.repack()).doesNotContainKey(only);
    }

    @Test
    void withoutRelocationOnlyPacksNoRefNamesGoAndNothingMoves() {
        PackId quarter = pack("a", "b", "c", "d");
        PackId duplicate = pack("a", "e");
        live(quarter, "a");
        RepackPlan.Plan p = plan(0, Set.of(), false);
        assertThat(p.repack()).isEmpty();
        assertThat(p.unused()).as("no ref names it; the copy the tree names stays where it is").containsExactly(duplicate);
        assertThat(p.relocates()).isFalse();
    }

    @Test
    void aPackWhoseBlobsAreUnknownGoesOnlyWhenNoRefNamesIt() {
        PackId named = pack("a");
        PackId other = pack("b");
        live(named, "a");
        packs.remove(named); // its trailer is damaged and no index object lists it
        packs.remove(other);
        PackInventory.Snapshot inv = inventory();
        Map<PackId, ObjectStore.Entry> all = new HashMap<>(inv.packs());
        all.put(named, new ObjectStore.Entry(RepositoryLayout.packKey(named), 100, Instant.EPOCH));
        all.put(other, new ObjectStore.Entry(RepositoryLayout.packKey(other), 100, Instant.EPOCH));
        PackInventory.Snapshot damagedTrailers = new PackInventory.Snapshot(all, inv.entries(), Set.of(), Map.of(),
                inv.copies());
        RepackPlan.Plan p = RepackPlan.plan(live, refPacks, damagedTrailers, Set.of(), Set.of(), 0.5, true);
        assertThat(p.unused()).containsExactly(other);
    }
}
