package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.assertj.core.api.ThrowableAssert;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The on-disk format alone: manifests, config, lock, packs, index nodes; torn and damaged files. */
class RepositoryFormatTest {
    @TempDir
    Path dir;

    static void failsWith(RepositoryException.Code code, String message, ThrowableAssert.ThrowingCallable call) {
        assertThatThrownBy(call).isInstanceOfSatisfying(RepositoryException.class, e -> {
            assertThat(e.code()).isEqualTo(code);
            assertThat(e.getMessage()).contains(message);
        });
    }

    static Point point(String id) {
        return new Point(id, "disk0", "2026-12-02T08:00:00Z", "full", "no earlier point of disk0", "gen", 1, 1 << 20,
                65536, 32, ManifestDescriptor.rootHex(Ref.HOLE), 1 << 20, 0, 0.5, "host1");
    }

    @Test
    void aManifestRoundTripsAndEveryTornOrFlippedByteIsDamaged() throws Exception {
        Path f = dir.resolve("20261202-080000-abcdef.point");
        Point p = point("20261202-080000-abcdef");
        byte[] bytes = ManifestDescriptor.encode(p);
        assertThat(ManifestDescriptor.decode(f, bytes)).isEqualTo(p);
        for (int cut = 0; cut < bytes.length; cut++) {
            byte[] torn = java.util.Arrays.copyOf(bytes, cut);
            failsWith(RepositoryException.Code.DAMAGED, f.toString(), () -> ManifestDescriptor.decode(f, torn));
        }
        for (int i = 0; i < bytes.length; i += 7) {
            byte[] flipped = bytes.clone();
            flipped[i] ^= 0x04;
            failsWith(RepositoryException.Code.DAMAGED, f.toString(), () -> ManifestDescriptor.decode(f, flipped));
        }
        failsWith(RepositoryException.Code.DAMAGED, "names another point",
                () -> ManifestDescriptor.decode(dir.resolve("other.point"), bytes));
    }

    @Test
    void aManifestOfAnotherFormatIsRefusedByVersion() {
        Path f = dir.resolve("x.point");
        String body = "{\"format\":3,\"id\":\"x\"}";
        String text = body + "\nsha256 " + Sha256.of(body.getBytes(StandardCharsets.UTF_8)).hex() + "\n";
        failsWith(RepositoryException.Code.VERSION, "has format 3; this blksnap reads formats 1 and 2",
                () -> ManifestDescriptor.decode(f, text.getBytes(StandardCharsets.UTF_8)));
    }

    @Test
    void aRepositoryOfAnotherVersionOrNoneAtAllIsRefused() throws Exception {
        failsWith(RepositoryException.Code.NOT_FOUND, "no repository at", () -> Repository.openForReading(dir));
        Repository.openForWriting(dir.resolve("r"), 1 << 20, m -> { }).close();
        Files.writeString(dir.resolve("r/config"), "blksnap-backup-repository\nversion 5\nid x\n");
        failsWith(RepositoryException.Code.VERSION, "has format version 5; this blksnap reads versions 1, 2, 3 (encrypted) "
                + "and 4 (blobs moved by gc)", () -> Repository.openForReading(dir.resolve("r")));
        failsWith(RepositoryException.Code.VERSION, "format version 5",
                () -> Repository.openForWriting(dir.resolve("r"), 1 << 20, m -> { }));
        Files.writeString(dir.resolve("r/config"), "blksnap-backup-repository\nversion 3\nid x\n");
        failsWith(RepositoryException.Code.DAMAGED, "of format version 3 lacks 'encryption aes-256-gcm' or its key check",
                () -> Repository.openForReading(dir.resolve("r")));
        Files.writeString(dir.resolve("r/config"), "something else\n");
        failsWith(RepositoryException.Code.DAMAGED, "is not a blksnap repository config",
                () -> Repository.openForReading(dir.resolve("r")));
        Files.writeString(dir.resolve("f"), "x");
        Files.createDirectories(dir.resolve("notempty"));
        Files.writeString(dir.resolve("notempty/file"), "x");
        failsWith(RepositoryException.Code.NOT_FOUND, "no repository at",
                () -> Repository.openForWriting(dir.resolve("notempty"), 1 << 20, m -> { }));
    }

    @Test
    void writersShareTheRepositoryAndADeadWriterOfThisHostIsHandedOver() throws Exception {
        Path r = dir.resolve("r");
        RepositoryLocation where = new RepositoryLocation.Directory(r);
        Repository.openForWriting(where, "h1", 1 << 20, m -> { }).close();
        try (Repository first = Repository.openForWriting(where, "h1", 1 << 20, m -> { });
             Repository second = Repository.openForWriting(where, "h1", 1 << 20, m -> { })) {
            first.recordSession(Map.of("snapshot", "1234"));
            assertThat(second.staleSessions()).as("a live writer of this host is not dead").isEmpty();
            assertThat(Repository.openForReading(r).points()).isEmpty();
            try (var s = Files.list(r.resolve("sessions"))) {
                assertThat(s.count()).as("start and beat of two writers").isEqualTo(4);
            }
        }
        assertThat(r.resolve("sessions")).as("closed writers leave no marker").isEmptyDirectory();
        // a writer of this host killed: its markers name a pid that is gone
        long deadPid = new ProcessBuilder("true").start().onExit().get().pid();
        Files.writeString(r.resolve("sessions/00000000000000aa.start"), "host h1\npid " + deadPid + "\n");
        Files.writeString(r.resolve("sessions/00000000000000aa.beat"), "host h1\npid " + deadPid
                + "\nsnapshot 1234\nstorage /x\n");
        Files.writeString(r.resolve("tmp/00000000000000aa.1234abcd.x.pack"), "torn");
        Files.writeString(r.resolve("sessions/00000000000000bb.beat"), "host h2\npid " + deadPid + "\nsnapshot 99\n");
        try (Repository next = Repository.openForWriting(where, "h1", 1 << 20, m -> { })) {
            assertThat(next.staleSessions()).singleElement().satisfies(m -> {
                assertThat(m).containsEntry("snapshot", "1234").containsEntry("storage", "/x");
            });
            assertThat(r.resolve("tmp/00000000000000aa.1234abcd.x.pack")).doesNotExist();
            assertThat(r.resolve("sessions/00000000000000aa.beat")).doesNotExist();
            assertThat(r.resolve("sessions/00000000000000bb.beat")).as("another host's session is not ours to judge").exists();
        }
    }

    static Map<Sha256, Ref> scan(ObjectStore objects, java.util.function.Consumer<String> warn) throws RepositoryException {
        Map<Sha256, Ref> index = new HashMap<>();
        PackScan.index(objects, index, warn);
        return index;
    }

    @Test
    void aSealedPackIsReadBackByRefAndByItsTrailerAndAFlippedByteIsFound() throws Exception {
        Path packs = dir.resolve("packs");
        Path tmp = Files.createDirectories(dir.resolve("tmp"));
        DirectoryStore objects = new DirectoryStore(dir);
        Random rnd = new Random(7);
        List<byte[]> blobs = new ArrayList<>();
        List<Ref> refs = new ArrayList<>();
        try (ChunkStore store = new ChunkStore(objects, "t", Map.of(), 100_000, null)) {
            for (int i = 0; i < 20; i++) {
                byte[] b = new byte[16384];
                if (i % 2 == 0) {
                    rnd.nextBytes(b);
                } else {
                    java.util.Arrays.fill(b, (byte) i);
                }
                blobs.add(b);
                refs.add(store.put(NodeDescriptor.KIND_CHUNK, Sha256.of(b), b));
            }
            store.seal();
        }
        assertThat(tmp).isEmptyDirectory();
        Map<Sha256, Ref> index = scan(objects, m -> { throw new AssertionError(m); });
        assertThat(index).hasSize(20);
        BlobReader reader = new BlobReader(objects, null);
        for (int i = 0; i < 20; i++) {
            assertThat(index.get(refs.get(i).hash())).isEqualTo(refs.get(i));
            assertThat(reader.read(refs.get(i))).isEqualTo(blobs.get(i));
        }
        // flip one byte of each blob's payload in turn: the read names that chunk as damaged
        Ref victim = refs.get(4);
        Path pack = packs.resolve(victim.pack() + ".pack");
        byte[] original = Files.readAllBytes(pack);
        for (int at : new int[] {0, 4, 5, 9, 13, 20, 47, 48, 1000, victim.lengthBytes() - 1}) {
            byte[] damaged = original.clone();
            damaged[(int) victim.offsetBytes() + at] ^= 0x10;
            Files.write(pack, damaged);
            try (DirectoryStore fresh = new DirectoryStore(dir)) {
                BlobReader r = new BlobReader(fresh, null);
                failsWith(RepositoryException.Code.DAMAGED, victim.hash().shortHex(), () -> r.read(victim));
            }
        }
        // a damaged trailer: the pack is left out of the index, with a warning naming it
        byte[] damaged = original.clone();
        damaged[damaged.length - PackDescriptor.FOOTER_BYTES - 3] ^= 1;
        Files.write(pack, damaged);
        List<String> warnings = new ArrayList<>();
        Map<Sha256, Ref> partial = scan(objects, warnings::add);
        assertThat(warnings).singleElement().asString().contains(pack.toString()).contains("trailer checksum mismatch");
        assertThat(partial).doesNotContainKey(victim.hash());
    }

    @Test
    void aNodeOfTheWrongShapeIsDamaged() {
        Ref[] children = {Ref.HOLE, Ref.HOLE};
        byte[] node = IndexTree.encode(1, children);
        Ref self = new Ref(NodeDescriptor.KIND_NODE, Sha256.of(node), new PackId(1, 2), 16, 100);
        failsWith(RepositoryException.Code.DAMAGED, "wants level 0 with 2", () -> IndexTree.decode(self, node, 0, 2));
        failsWith(RepositoryException.Code.DAMAGED, "wants level 1 with 3", () -> IndexTree.decode(self, node, 1, 3));
        byte[] badKind = node.clone();
        badKind[NodeDescriptor.HEADER_BYTES] = 7;
        failsWith(RepositoryException.Code.DAMAGED, "ref kind 7", () -> IndexTree.decode(self, badKind, 1, 2));
    }

    @Test
    void geometryCoversEveryChunkWithTheFewestLevels() {
        Geometry g = new Geometry(64L << 20, 65536, 32);
        assertThat(g.chunkCount()).isEqualTo(1024);
        assertThat(g.levels()).isEqualTo(2);
        assertThat(g.entries(1, 0)).isEqualTo(32);
        Geometry odd = new Geometry((64L << 20) + 512, 65536, 32);
        assertThat(odd.chunkCount()).isEqualTo(1025);
        assertThat(odd.levels()).isEqualTo(3);
        assertThat(odd.entries(2, 0)).isEqualTo(2);
        assertThat(odd.entries(1, 1)).isEqualTo(1);
        assertThat(odd.entries(0, 32)).isEqualTo(1);
        assertThat(odd.chunkLengthBytes(1024)).isEqualTo(512);
        assertThat(new Geometry(4096, 65536, 32).levels()).isEqualTo(1);
        assertThatThrownBy(() -> new Geometry(1 << 20, 65536 + 1, 32)).hasMessageContaining("chunkSizeBytes (65537)");
    }

    @Test
    void aBlobPutByManyThreadsAtOnceIsStoredOnceAndEveryRefReadsBack() throws Exception {
        Path packs = dir.resolve("packs");
        DirectoryStore objects = new DirectoryStore(dir);
        int distinct = 64;
        byte[][] blobs = new byte[distinct][];
        Random rnd = new Random(11);
        for (int i = 0; i < distinct; i++) {
            blobs[i] = new byte[8192];
            rnd.nextBytes(blobs[i]);
        }
        Map<Integer, List<Ref>> seen = new java.util.concurrent.ConcurrentHashMap<>();
        try (ChunkStore store = new ChunkStore(objects, "t", Map.of(), 64 << 10, null)) {
            try (var pool = java.util.concurrent.Executors.newFixedThreadPool(8)) {
                java.util.concurrent.CountDownLatch go = new java.util.concurrent.CountDownLatch(1);
                List<java.util.concurrent.Future<?>> fs = new ArrayList<>();
                for (int t = 0; t < 8; t++) {
                    int seed = t;
                    fs.add(pool.submit(() -> {
                        go.await();
                        Random r = new Random(seed);
                        for (int k = 0; k < 400; k++) {
                            int i = r.nextInt(distinct);
                            Ref ref = store.put(NodeDescriptor.KIND_CHUNK, Sha256.of(blobs[i]), blobs[i]);
                            seen.computeIfAbsent(i, x -> java.util.Collections.synchronizedList(new ArrayList<>())).add(ref);
                        }
                        return null;
                    }));
                }
                go.countDown();
                for (var f : fs) {
                    f.get();
                }
            }
            store.seal();
            // never: a blob stored twice, or two refs for one blob
            assertThat(store.newBlobs()).isEqualTo(seen.size());
        }
        Map<Sha256, Ref> index = scan(objects, m -> { throw new AssertionError(m); });
        assertThat(index).hasSize(seen.size());
        BlobReader reader = new BlobReader(objects, null);
        for (var e : seen.entrySet()) {
            assertThat(e.getValue().stream().distinct()).hasSize(1);
            assertThat(reader.read(e.getValue().getFirst())).isEqualTo(blobs[e.getKey()]);
        }
        try (var s = Files.list(packs)) {
            assertThat(s.count()).as("64 KiB packs of 8 KiB random blobs").isGreaterThan(3);
        }
    }
}
