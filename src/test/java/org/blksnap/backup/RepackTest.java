package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.blksnap.nbd.FileExportServer;
import org.blksnap.testing.S3ServerExtension;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * gc repacks (format version 4): after prune, packs shared by live and dead chunks shrink to what
 * the remaining points need, every remaining point restores bit for bit and verifies clean, a
 * backup running beside the repack is as safe as beside a plain gc, a gc that stopped between its
 * new packs and its condemned list leaves a readable repository that the next gc finishes, and
 * chunks verify found damaged are healed by the next backup of the same content.
 */
class RepackTest {
    static final int BLOCK = RepositoryRoundTripTest.BLOCK;
    static final long SIZE = RepositoryRoundTripTest.SIZE;
    static final int BLOCKS = RepositoryRoundTripTest.BLOCKS;
    /** Blocks each incremental changes (a quarter of the device). */
    static final int CHANGED = BLOCKS / 4;
    /** Pack size: 16 chunks, so that every pack mixes chunks of several points. */
    static final long PACK_BYTES = 1 << 20;

    @RegisterExtension
    static final S3ServerExtension s3 = new S3ServerExtension();

    @TempDir
    Path dir;

    /** A repository to test in: where, and its key (null: unencrypted). */
    private record Repo(RepositoryLocation where, RepositoryKey key) {
        Repository writer() throws RepositoryException {
            return Repository.openForWriting(where, key, "h1", PACK_BYTES, m -> { });
        }

        Repository maintenance() throws RepositoryException {
            return Repository.openForMaintenance(where, key, m -> { });
        }

        Repository reader() throws RepositoryException {
            return Repository.openForReading(where, key);
        }

        long packBytes() throws RepositoryException {
            try (Repository r = reader()) {
                return r.objectCounts().get(RepositoryLayout.PACKS)[1];
            }
        }

        String config() throws RepositoryException {
            try (ObjectStore s = Repository.storeFor(where)) {
                return new String(s.get(RepositoryLayout.CONFIG, RepositoryLayout.MAX_CONFIG_BYTES), StandardCharsets.UTF_8);
            }
        }
    }

    private Repo repo(String kind) throws Exception {
        return switch (kind) {
            case "dir" -> new Repo(new RepositoryLocation.Directory(dir.resolve("repo")), null);
            case "s3" -> new Repo(RepositoryLocation.parse(s3.newRepo("repack"), s3.endpoint().toString()), null);
            case "encrypted-dir" -> {
                RepositoryLocation where = new RepositoryLocation.Directory(dir.resolve("repo"));
                Repository.init(where, dir.resolve("repo.key"));
                yield new Repo(where, RepositoryKey.load(dir.resolve("repo.key")));
            }
            default -> throw new IllegalArgumentException(kind);
        };
    }

    /** A device's successive contents and the points backed up of them. */
    private static final class Chain {
        final List<Point> points = new ArrayList<>();
        final List<byte[]> images = new ArrayList<>();
        final byte[] map = new byte[BLOCKS];
        byte[] current;
        long snap;
    }

    /**
     * A full point of random content, then {@code incrementals} points each changing {@link #CHANGED}
     * random blocks to new random content (incompressible: stored bytes are the chunks' bytes).
     */
    private static Chain chain(Repository w, String uri, int incrementals, long seed) throws Exception {
        Chain c = new Chain();
        Random r = new Random(seed);
        c.current = new byte[(int) SIZE];
        r.nextBytes(c.current);
        RepositoryRoundTripTest.write(uri, 0, c.current);
        c.snap = 1;
        c.points.add(w.backup(RepositoryRoundTripTest.source(uri, "gen-" + seed, c.snap), null, Repository.Progress.NONE));
        c.images.add(c.current.clone());
        for (int i = 0; i < incrementals; i++) {
            c.snap++;
            for (int n = 0; n < CHANGED; n++) {
                int b = r.nextInt(BLOCKS);
                byte[] chunk = new byte[BLOCK];
                r.nextBytes(chunk);
                System.arraycopy(chunk, 0, c.current, b * BLOCK, BLOCK);
                RepositoryRoundTripTest.write(uri, (long) b * BLOCK, chunk);
                c.map[b] = (byte) c.snap;
            }
            byte[] map = c.map.clone();
            Point p = w.backup(RepositoryRoundTripTest.source(uri, "gen-" + seed, c.snap), () -> map, Repository.Progress.NONE);
            assertThat(p.kind()).isEqualTo("incremental");
            c.points.add(p);
            c.images.add(c.current.clone());
        }
        return c;
    }

    /** Stored bytes the chunks of {@code images} need at least: each distinct chunk once, with its blob header. */
    private static long neededChunkBytes(List<byte[]> images) {
        Set<Sha256> distinct = new HashSet<>();
        for (byte[] image : images) {
            for (int b = 0; b < BLOCKS; b++) {
                distinct.add(Sha256.of(image, b * BLOCK, BLOCK));
            }
        }
        return (long) distinct.size() * (BLOCK + PackDescriptor.BLOB_HEADER_BYTES);
    }

    /** Every point of {@code ids} restores to its image, and verify of the repository is clean. */
    private void assertRestoreAndVerify(Repo repo, List<Point> points, List<byte[]> images, String when) throws Exception {
        try (Repository r = repo.reader()) {
            for (int i = 0; i < points.size(); i++) {
                Path out = dir.resolve(when + "-" + points.get(i).id() + ".img");
                r.restore(points.get(i).id(), out.toString(), Repository.Progress.NONE);
                assertThat(Files.readAllBytes(out)).as("point %s restored %s", points.get(i).id(), when)
                        .isEqualTo(images.get(i));
                Files.delete(out);
            }
            Repository.VerifyReport v = r.verify(null);
            assertThat(v.problems()).as("verify " + when).isEmpty();
            assertThat(v.damagedCopies()).as("verify " + when).isEmpty();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"dir", "s3", "encrypted-dir"})
    void pruningHalfAChainThenGcShrinksTheRepositoryToWhatTheRestNeedAndEveryPointStillRestoresExactly(String kind)
            throws Exception {
        Repo repo = repo(kind);
        Chain c;
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0");
             Repository w = repo.writer()) {
            c = chain(w, nbd.uri("disk0"), 5, 1);
        }
        assertThat(repo.config()).contains("version " + (repo.key() == null ? 2 : 3) + "\n");
        long before = repo.packBytes();
        List<Point> kept = c.points.subList(3, 6);
        List<byte[]> keptImages = c.images.subList(3, 6);
        long needed = neededChunkBytes(keptImages);
        // index nodes (5 a point, about 2 KiB each), pack headers, trailers and footers: well under this
        long slack = 64 << 10;
        try (Repository m = repo.maintenance()) {
            m.prune(new Retention(3, 0, 0, 0), false);
            Repository.GcResult dry = m.gc(Duration.ZERO, true);
            assertThat(dry.packsRepacked()).isNotEmpty();
            assertThat(dry.bytesMoved()).isPositive();
            assertThat(repo.packBytes()).as("a dry run changes nothing").isEqualTo(before);
            assertThat(repo.config()).as("a dry run changes nothing").doesNotContain("version 4");

            Repository.GcResult gc = m.gc(Duration.ZERO, false);
            assertThat(gc.packsRepacked()).isEqualTo(dry.packsRepacked());
            assertThat(gc.bytesMoved()).isEqualTo(dry.bytesMoved());
            assertThat(gc.packsWritten()).isPositive();
            assertThat(gc.packsRemoved()).containsAll(gc.packsRepacked());
            assertThat(gc.packsWaiting()).isZero();
            long afterHalf = repo.packBytes();
            assertThat(afterHalf).as("every pack left is at least half live").isLessThan(2 * needed + 2 * slack);
            assertThat(afterHalf).as("the packs removed went, the blobs moved came (in new packs with trailers)")
                    .isBetween(before - gc.bytesRemoved() + gc.bytesMoved(), before - gc.bytesRemoved() + gc.bytesMoved() + slack);
            assertThat(repo.config()).contains("version 4\n");
            assertRestoreAndVerify(repo, kept, keptImages, "after-gc");

            Repository.GcResult all = m.gc(Duration.ZERO, false, 1.0);
            long afterAll = repo.packBytes();
            assertThat(afterAll).as("every pack with a dead byte repacked: what the three points need")
                    .isBetween(needed, needed + slack);
            assertRestoreAndVerify(repo, kept, keptImages, "after-repack-all");

            Repository.GcResult again = m.gc(Duration.ZERO, false, 1.0);
            assertThat(again.packsRepacked()).as("nothing left to repack").isEmpty();
            assertThat(again.packsRemoved()).isEmpty();
            assertThat(repo.packBytes()).isEqualTo(afterAll);
            assertThat(all.points()).isEqualTo(3);
        }
        assertRestoreAndVerify(repo, kept, keptImages, "after-second-gc");
        if (repo.key() != null) {
            assertThat(repo.config()).as("the encryption lines stay").contains("version 4\nid ")
                    .contains("\nencryption aes-256-gcm\nkey-check ");
        }
    }

    @Test
    void gcWithoutRepackingLeavesAVersion2RepositoryWhereEveryRefIsExact() throws Exception {
        Repo repo = repo("dir");
        Chain c;
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0");
             Repository w = repo.writer()) {
            c = chain(w, nbd.uri("disk0"), 3, 2);
        }
        try (Repository m = repo.maintenance()) {
            m.prune(new Retention(2, 0, 0, 0), false);
            Repository.GcResult gc = m.gc(Duration.ZERO, false, 0);
            assertThat(gc.packsRepacked()).isEmpty();
            assertThat(gc.bytesMoved()).isZero();
        }
        assertThat(repo.config()).contains("version 2\n");
        // every pack a remaining ref names is still there: an older blksnap reads the repository as before
        try (Repository r = repo.reader()) {
            for (Point p : r.points()) {
                IndexTree.walk(p.geometry(), ManifestDescriptor.rootRef(p), r.reader(), new IndexTree.Visitor() {
                    @Override
                    public void hole(long firstChunk, long chunkCount) {
                    }

                    @Override
                    public void chunk(int chunkIndex, Ref ref) throws RepositoryException {
                        assertThat(r.objects().sizeBytes(RepositoryLayout.packKey(ref.pack()))).isPositive();
                    }
                });
            }
        }
        assertRestoreAndVerify(repo, c.points.subList(2, 4), c.images.subList(2, 4), "after-gc");
    }

    @Test
    void aRepackedRepositoryIsRefusedByAReaderOfVersions1To3WithVersion() throws Exception {
        Repo repo = repo("dir");
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0");
             Repository w = repo.writer()) {
            chain(w, nbd.uri("disk0"), 2, 3);
        }
        try (Repository m = repo.maintenance()) {
            m.prune(new Retention(1, 0, 0, 0), false);
            assertThat(m.gc(Duration.ZERO, false).packsRepacked()).isNotEmpty();
        }
        String config = repo.config();
        assertThat(config).startsWith("blksnap-backup-repository\nversion 4\nid ");
        // what a reader of versions 1 to 3 does with that config (Repository.readConfig before version 4):
        // any version line other than 1, 2 or 3 is VERSION, named
        RepositoryException older = olderReadConfig(config, repo.where().toString());
        assertThat(older.code()).isEqualTo(RepositoryException.Code.VERSION);
        assertThat(older.getMessage()).contains("has format version 4");
        assertThat(RepositoryException.Code.VERSION.exitStatus()).isEqualTo(65);
    }

    /** The version check of blksnap before format version 4 (kept here as it was), on a config's text. */
    private static RepositoryException olderReadConfig(String text, String location) {
        String[] lines = text.split("\n");
        String version = lines[1].substring("version ".length()).trim();
        return switch (version) {
            case "1", "2", "3" -> null;
            default -> new RepositoryException(RepositoryException.Code.VERSION, "repository " + location
                    + " has format version " + version + "; this blksnap reads versions 1, 2 and 3 (encrypted)");
        };
    }

    @Test
    void aBackupThatBeganBeforeTheRepackRefersToCondemnedChunksAndItsPointStillRestoresExactly() throws Exception {
        Repo repo = repo("dir");
        Chain c;
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0")) {
            String uri = nbd.uri("disk0");
            try (Repository w = repo.writer()) {
                c = chain(w, uri, 5, 4);
            }
            try (Repository m = repo.maintenance()) {
                m.prune(new Retention(3, 0, 0, 0), false);
            }
            Point late;
            try (Repository w = repo.writer()) {
                w.store(); // the writer has loaded what exists: refs into packs the gc below condemns
                Repository.GcResult gc;
                try (Repository m = repo.maintenance()) {
                    gc = m.gc(Duration.ZERO, false, 1.0);
                    assertThat(gc.packsRepacked()).isNotEmpty();
                    assertThat(gc.packsRemoved()).as("the writer began before the list: nothing goes yet").isEmpty();
                    assertThat(gc.packsWaiting()).isPositive();
                }
                // the writer backs up the oldest, pruned content again (a new generation: a full point), so
                // it refers to chunks no point used when gc marked: their only copies are in condemned packs
                RepositoryRoundTripTest.write(uri, 0, c.images.getFirst());
                late = w.backup(RepositoryRoundTripTest.source(uri, "other-gen", 1), null, Repository.Progress.NONE);
                assertThat(late.newBytes()).as("every chunk deduplicated against the packs it loaded")
                        .isLessThan(16L * 1024);
                try (Repository m = repo.maintenance()) {
                    assertThat(m.gc(Duration.ZERO, false, 1.0).packsRemoved()).as("the writer is still live").isEmpty();
                }
            }
            try (Repository m = repo.maintenance()) {
                Repository.GcResult after = m.gc(Duration.ZERO, false, 1.0);
                assertThat(after.packsRemoved()).as("the packs no point needs go now").isNotEmpty();
            }
            List<Point> points = new ArrayList<>(c.points.subList(3, 6));
            List<byte[]> images = new ArrayList<>(c.images.subList(3, 6));
            points.add(late);
            images.add(c.images.getFirst());
            assertRestoreAndVerify(repo, points, images, "after-gc");
            try (Repository m = repo.maintenance()) {
                m.gc(Duration.ZERO, false, 1.0);
            }
            assertRestoreAndVerify(repo, points, images, "after-second-gc");
            assertThat(repo.packBytes()).isLessThan(neededChunkBytes(images) + (64 << 10));
        }
    }

    @Test
    void aPointReaderOpenedBeforeTheRepackReadsEveryChunkAfterItsPacksAreGoneThroughTheNewIndexObjects() throws Exception {
        Repo repo = repo("dir");
        Chain c;
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0");
             Repository w = repo.writer()) {
            c = chain(w, nbd.uri("disk0"), 5, 7);
        }
        try (Repository m = repo.maintenance()) {
            m.prune(new Retention(3, 0, 0, 0), false);
        }
        Point p = c.points.get(3);
        byte[] image = c.images.get(3);
        try (Repository r = repo.reader()) {
            PointReader pr = PointReader.open(r, p.id(), PointReader.NO_CACHE); // as serve holds it, for hours
            assertThat(pr.readChunk(0)).isEqualTo(Arrays.copyOfRange(image, 0, BLOCK));
            // a miss before the repack loads the reader's copies of the index objects as they are now
            Ref anyChunk = new Ref(NodeDescriptor.KIND_CHUNK, Sha256.of(image, 0, BLOCK), PackId.random(), 16, BLOCK + 48);
            assertThat(r.reader().read(anyChunk)).isEqualTo(Arrays.copyOfRange(image, 0, BLOCK));
            try (Repository m = repo.maintenance()) {
                Repository.GcResult gc = m.gc(Duration.ZERO, false, 1.0);
                assertThat(gc.packsRepacked()).isNotEmpty();
                assertThat(gc.packsRemoved()).as("readers hold no session: the packs go at once")
                        .containsAll(gc.packsRepacked());
            }
            List<Ref> refs = new ArrayList<>();
            IndexTree.walk(p.geometry(), ManifestDescriptor.rootRef(p), r.reader(), new IndexTree.Visitor() {
                @Override
                public void hole(long firstChunk, long chunkCount) {
                }

                @Override
                public void chunk(int chunkIndex, Ref ref) {
                    refs.add(ref);
                }
            });
            long gone = refs.stream().filter(ref -> !Files.exists(dir.resolve("repo").resolve(
                    RepositoryLayout.packKey(ref.pack())))).count();
            assertThat(gone).as("chunks whose ref names a pack gc removed").isGreaterThan(BLOCKS / 4);
            for (int i = 0; i < BLOCKS; i++) {
                assertThat(pr.readChunk(i)).as("chunk %d", i)
                        .isEqualTo(Arrays.copyOfRange(image, i * BLOCK, (i + 1) * BLOCK));
            }
        }
    }

    @Test
    void aReaderThatMissesLoadsThePointsHostsIndexObjectsNotTheOtherHosts() throws Exception {
        Repo repo = repo("dir");
        Chain mine;
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0")) {
            try (Repository w = repo.writer()) {
                mine = chain(w, nbd.uri("disk0"), 3, 8);
            }
            try (Repository other = Repository.openForWriting(repo.where(), null, "h2", PACK_BYTES, m -> { })) {
                chain(other, nbd.uri("disk0"), 3, 9);
            }
        }
        try (Repository m = repo.maintenance()) {
            m.prune(new Retention(1, 0, 0, 0), false);
            assertThat(m.gc(Duration.ZERO, false, 1.0).packsRepacked()).isNotEmpty();
        }
        try (var idx = Files.list(dir.resolve("repo/index"))) {
            assertThat(idx.map(f -> f.getFileName().toString())).as("gc lists what it moved by the host of the packs")
                    .anyMatch(n -> n.startsWith("h1+gc-")).anyMatch(n -> n.startsWith("h2+gc-"));
        }
        Point p = mine.points.getLast();
        byte[] image = mine.images.getLast();
        List<String> fetched = java.util.Collections.synchronizedList(new ArrayList<>());
        try (ObjectStore real = Repository.storeFor(repo.where())) {
            ObjectStore recording = (ObjectStore) java.lang.reflect.Proxy.newProxyInstance(ObjectStore.class.getClassLoader(),
                    new Class<?>[] {ObjectStore.class}, (proxy, method, args) -> {
                        if (method.getName().equals("get")) {
                            fetched.add((String) args[0]);
                        }
                        try {
                            return method.invoke(real, args);
                        } catch (java.lang.reflect.InvocationTargetException e) {
                            throw e.getCause();
                        }
                    });
            BlobReader reader = new BlobReader(recording, null).forHost(p.host());
            byte[] restored = new byte[(int) SIZE];
            int[] moved = {0};
            IndexTree.walk(p.geometry(), ManifestDescriptor.rootRef(p), reader, new IndexTree.Visitor() {
                @Override
                public void hole(long firstChunk, long chunkCount) {
                }

                @Override
                public void chunk(int chunkIndex, Ref ref) throws RepositoryException {
                    if (!Files.exists(dir.resolve("repo").resolve(RepositoryLayout.packKey(ref.pack())))) {
                        moved[0]++;
                    }
                    System.arraycopy(reader.read(ref), 0, restored, chunkIndex * BLOCK, BLOCK);
                }
            });
            assertThat(moved[0]).as("chunks gc moved").isPositive();
            assertThat(restored).isEqualTo(image);
        }
        assertThat(fetched).as("index objects read").isNotEmpty().allMatch(k -> !k.startsWith("index/h2+"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"dir", "s3"})
    void twoHostsBackingUpWhilePruneAndRepackingGcRunInALoopLoseNoPointThatIsKept(String kind) throws Exception {
        Repo repo = repo(kind);
        java.util.Map<String, byte[]> images = new java.util.concurrent.ConcurrentHashMap<>();
        java.util.concurrent.atomic.AtomicBoolean writing = new java.util.concurrent.atomic.AtomicBoolean(true);
        List<Repository.GcResult> gcs = java.util.Collections.synchronizedList(new ArrayList<>());
        // made first: two writers creating one repository at the same instant may see the other's tmp/ and refuse
        repo.writer().close();
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0", "disk1");
             var pool = java.util.concurrent.Executors.newVirtualThreadPerTaskExecutor()) {
            List<java.util.concurrent.Future<?>> writers = new ArrayList<>();
            for (int h = 0; h < 2; h++) {
                String host = "h" + (h + 1);
                String device = "disk" + h;
                String uri = nbd.uri(device);
                long seed = 20 + h;
                writers.add(pool.submit(() -> {
                    Random r = new Random(seed);
                    byte[] current = new byte[(int) SIZE];
                    r.nextBytes(current);
                    RepositoryRoundTripTest.write(uri, 0, current);
                    byte[] map = new byte[BLOCKS];
                    for (int snap = 1; snap <= 6; snap++) {
                        if (snap > 1) {
                            for (int n = 0; n < CHANGED; n++) {
                                int b = r.nextInt(BLOCKS);
                                byte[] chunk = new byte[BLOCK];
                                r.nextBytes(chunk);
                                System.arraycopy(chunk, 0, current, b * BLOCK, BLOCK);
                                RepositoryRoundTripTest.write(uri, (long) b * BLOCK, chunk);
                                map[b] = (byte) snap;
                            }
                        }
                        byte[] m = map.clone();
                        try (Repository w = Repository.openForWriting(repo.where(), null, host, PACK_BYTES, x -> { })) {
                            Point p = w.backup(new Repository.BackupSource(device, uri, SIZE, BLOCK, "gen-" + host, snap),
                                    snap == 1 ? null : () -> m, Repository.Progress.NONE);
                            images.put(p.id(), current.clone());
                        }
                    }
                    return null;
                }));
            }
            java.util.concurrent.Future<?> collector = pool.submit(() -> {
                while (writing.get()) {
                    try (Repository m = repo.maintenance()) {
                        m.prune(new Retention(2, 0, 0, 0), false);
                        gcs.add(m.gc(Duration.ZERO, false, 1.0));
                    }
                    Thread.sleep(20);
                }
                return null;
            });
            try {
                for (java.util.concurrent.Future<?> w : writers) {
                    w.get();
                }
            } finally {
                writing.set(false);
            }
            collector.get();
        }
        assertThat(gcs).as("gc runs beside the backups").isNotEmpty();
        assertThat(gcs.stream().mapToLong(Repository.GcResult::bytesMoved).sum()).as("some of them repacked").isPositive();
        List<Point> left;
        try (Repository r = repo.reader()) {
            left = r.points();
        }
        assertThat(left).hasSizeGreaterThanOrEqualTo(4);
        assertRestoreAndVerify(repo, left, left.stream().map(p -> images.get(p.id())).toList(), "after-the-race");
        try (Repository m = repo.maintenance()) {
            m.prune(new Retention(2, 0, 0, 0), false);
            m.gc(Duration.ZERO, false, 1.0);
        }
        try (Repository r = repo.reader()) {
            left = r.points();
        }
        assertRestoreAndVerify(repo, left, left.stream().map(p -> images.get(p.id())).toList(), "after-a-last-gc");
        assertThat(repo.packBytes()).isLessThan(neededChunkBytes(left.stream().map(p -> images.get(p.id())).toList())
                + (64 << 10));
    }

    @Test
    void aGcStoppedBetweenItsNewPacksAndItsCondemnedListLeavesAReadableRepositoryAndTheNextGcFinishes() throws Exception {
        Repo repo = repo("dir");
        Chain c;
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0");
             Repository w = repo.writer()) {
            c = chain(w, nbd.uri("disk0"), 5, 5);
        }
        List<Point> kept = c.points.subList(3, 6);
        List<byte[]> keptImages = c.images.subList(3, 6);
        Path gcDir = dir.resolve("repo").resolve(RepositoryLayout.GC);
        Repository.GcResult first;
        try (Repository m = repo.maintenance()) {
            m.prune(new Retention(3, 0, 0, 0), false);
            first = m.gc(Duration.ofHours(1), false, 1.0); // the grace keeps the list unswept
        }
        assertThat(first.packsRepacked()).isNotEmpty();
        assertThat(first.packsRemoved()).isEmpty();
        // the state of a gc killed after its new packs and their index object were durable, before its list
        try (var lists = Files.list(gcDir)) {
            for (Path l : lists.filter(p -> p.getFileName().toString().startsWith("condemned-")).toList()) {
                Files.delete(l);
            }
        }
        long duplicated = repo.packBytes();
        assertRestoreAndVerify(repo, kept, keptImages, "after-stopped-gc");
        try (Repository m = repo.maintenance()) {
            Repository.GcResult next = m.gc(Duration.ZERO, false, 1.0);
            assertThat(next.bytesMoved()).as("the copies the stopped gc made are kept: nothing is copied again").isZero();
            assertThat(next.packsRemoved()).containsAll(first.packsRepacked());
        }
        assertThat(repo.packBytes()).isLessThan(duplicated)
                .isBetween(neededChunkBytes(keptImages), neededChunkBytes(keptImages) + (64 << 10));
        assertRestoreAndVerify(repo, kept, keptImages, "after-next-gc");
    }

    @ParameterizedTest
    @ValueSource(strings = {"dir", "s3"})
    void aChunkVerifyFoundDamagedIsStoredAgainByTheNextBackupAndTheOldPointsThenRestoreExactly(String kind)
            throws Exception {
        Repo repo = repo(kind);
        byte[] v = new byte[(int) SIZE];
        new Random(6).nextBytes(v);
        Point p1;
        Point p2;
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0")) {
            String uri = nbd.uri("disk0");
            RepositoryRoundTripTest.write(uri, 0, v);
            try (Repository w = repo.writer()) {
                p1 = w.backup(RepositoryRoundTripTest.source(uri, "g1", 1), null, Repository.Progress.NONE);
                p2 = w.backup(RepositoryRoundTripTest.source(uri, "g1", 2), () -> new byte[BLOCKS], Repository.Progress.NONE);
            }
            // one byte of chunk 5's stored copy flipped (random data is stored raw)
            Sha256 name = Sha256.of(v, 5 * BLOCK, BLOCK);
            Ref copy = null;
            try (ObjectStore store = Repository.storeFor(repo.where())) {
                PackInventory.Snapshot inv = new PackInventory(store, m -> { }).take();
                copy = inv.copies().get(name).getFirst();
                String key = RepositoryLayout.packKey(copy.pack());
                byte[] bytes = store.get(key, Integer.MAX_VALUE - 16);
                bytes[(int) copy.offsetBytes() + PackDescriptor.BLOB_HEADER_BYTES + 1000] ^= 0x01;
                store.put(key, bytes);
            }
            try (Repository r = repo.reader()) {
                Repository.VerifyReport report = r.verify(null);
                assertThat(report.problems()).singleElement().satisfies(p -> {
                    assertThat(p.what()).contains("chunk " + name.shortHex());
                    assertThat(p.why()).contains("does not hash to its name");
                    assertThat(p.points()).containsExactlyInAnyOrder(p1.id(), p2.id());
                });
                assertThat(report.damagedCopies()).singleElement().asString().contains("recorded");
                Path out = dir.resolve("broken.img");
                assertThatThrownBy(() -> r.restore(p1.id(), out.toString(), Repository.Progress.NONE))
                        .isInstanceOfSatisfying(RepositoryException.class, e -> {
                            assertThat(e.code()).isEqualTo(RepositoryException.Code.DAMAGED);
                            assertThat(e.getMessage()).contains("point " + p1.id(), name.shortHex(), "no other copy");
                        });
            }
            try (ObjectStore store = Repository.storeFor(repo.where())) {
                assertThat(DamagedCopies.load(store)).containsExactly(DamagedCopies.normal(copy));
            }
            // the same content backed up again (a new generation: a full point) stores a good copy of chunk 5 only
            Point p3;
            try (Repository w = repo.writer()) {
                p3 = w.backup(RepositoryRoundTripTest.source(uri, "g2", 1), null, Repository.Progress.NONE);
            }
            assertThat(p3.newBytes()).as("chunk 5 again and the nodes above it, nothing else")
                    .isBetween((long) BLOCK, BLOCK + 3 * 4096L);
            assertRestoreAndVerifyHealed(repo, List.of(p1, p2, p3), v);
            // gc drops the damaged copy (every pack with a dead byte is repacked), and forgets the record
            try (Repository m = repo.maintenance()) {
                Repository.GcResult gc = m.gc(Duration.ZERO, false, 1.0);
                assertThat(gc.packsRemoved()).contains(copy.pack() + PackDescriptor.SUFFIX);
            }
            try (ObjectStore store = Repository.storeFor(repo.where())) {
                assertThat(DamagedCopies.load(store)).isEmpty();
            }
            assertRestoreAndVerify(repo, List.of(p1, p2, p3), List.of(v, v, v), "after-gc");
        }
    }

    @Test
    void anIncrementalAfterVerifyReadsTheDamagedBlockAgainAndHealsTheOlderPoints() throws Exception {
        Repo repo = repo("dir");
        byte[] v = new byte[(int) SIZE];
        new Random(10).nextBytes(v);
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0")) {
            String uri = nbd.uri("disk0");
            RepositoryRoundTripTest.write(uri, 0, v);
            Point p1;
            Point p2;
            try (Repository w = repo.writer()) {
                p1 = w.backup(RepositoryRoundTripTest.source(uri, "g1", 1), null, Repository.Progress.NONE);
                p2 = w.backup(RepositoryRoundTripTest.source(uri, "g1", 2), () -> new byte[BLOCKS], Repository.Progress.NONE);
            }
            Sha256 name = Sha256.of(v, 77 * BLOCK, BLOCK);
            try (ObjectStore store = Repository.storeFor(repo.where())) {
                Ref copy = new PackInventory(store, m -> { }).take().copies().get(name).getFirst();
                String key = RepositoryLayout.packKey(copy.pack());
                byte[] bytes = store.get(key, Integer.MAX_VALUE - 16);
                bytes[(int) copy.offsetBytes() + PackDescriptor.BLOB_HEADER_BYTES + 5] ^= 0x10;
                store.put(key, bytes);
            }
            try (Repository r = repo.reader()) {
                assertThat(r.verify(null).problems()).singleElement()
                        .satisfies(pr -> assertThat(pr.points()).containsExactlyInAnyOrder(p1.id(), p2.id()));
            }
            Point p3;
            try (Repository w = repo.writer()) {
                p3 = w.backup(RepositoryRoundTripTest.source(uri, "g1", 3), () -> new byte[BLOCKS], Repository.Progress.NONE);
            }
            assertThat(p3.kind()).isEqualTo("incremental");
            assertThat(p3.bytesRead()).as("nothing changed, but the block of the damaged chunk is read again")
                    .isEqualTo(BLOCK);
            assertRestoreAndVerifyHealed(repo, List.of(p1, p2, p3), v);
        }
    }

    /** Every point restores to {@code v}; verify is clean but for the damaged copy, which a good copy answers. */
    private void assertRestoreAndVerifyHealed(Repo repo, List<Point> points, byte[] v) throws Exception {
        try (Repository r = repo.reader()) {
            for (Point p : points) {
                Path out = dir.resolve("healed-" + p.id() + ".img");
                r.restore(p.id(), out.toString(), Repository.Progress.NONE);
                assertThat(Files.readAllBytes(out)).as("point %s", p.id()).isEqualTo(v);
            }
            Repository.VerifyReport report = r.verify(null);
            assertThat(report.ok()).isTrue();
            assertThat(report.damagedCopies()).singleElement().asString()
                    .contains("a good copy elsewhere answered", "recorded before");
        }
    }
}
