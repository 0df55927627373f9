package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import org.blksnap.nbd.FileExportServer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The writer's index kept between the backups of one process ({@link WriterIndexCache}): a later
 * load decodes only the index objects that appeared since, and returns exactly what a fresh load
 * returns; a gc that condemns packs or replaces index objects, a damaged copy verify recorded and a
 * deleted point each make the next load start afresh; loads racing each other and a backup
 * committing beside them return what a fresh load returns.
 */
class WriterIndexCacheTest {
    static final int BLOCK = RepositoryRoundTripTest.BLOCK;
    static final long SIZE = RepositoryRoundTripTest.SIZE;
    static final int BLOCKS = RepositoryRoundTripTest.BLOCKS;

    @TempDir
    Path dir;

    private Path repoDir;
    private FileExportServer nbd;
    private String uri;
    private byte[] current;
    private final Random random = new Random(7);
    private long snap;
    private final WriterIndexCache cache = new WriterIndexCache();

    @BeforeEach
    void setUp() throws Exception {
        repoDir = dir.resolve("repo");
        nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0");
        uri = nbd.uri("disk0");
        current = new byte[(int) SIZE];
        random.nextBytes(current);
        RepositoryRoundTripTest.write(uri, 0, current);
    }

    @AfterEach
    void tearDown() throws Exception {
        nbd.close();
    }

    /** A point of the device: full for the first, else incremental after {@code changed} random blocks were rewritten. */
    private Point backup(int changed) throws Exception {
        byte[] map = new byte[BLOCKS];
        snap++;
        for (int i = 0; i < changed; i++) {
            int b = random.nextInt(BLOCKS);
            byte[] chunk = new byte[BLOCK];
            random.nextBytes(chunk);
            System.arraycopy(chunk, 0, current, b * BLOCK, BLOCK);
            RepositoryRoundTripTest.write(uri, (long) b * BLOCK, chunk);
            map[b] = (byte) snap;
        }
        try (Repository w = Repository.openForWriting(repoDir, 256 << 10, m -> { })) {
            return w.backup(RepositoryRoundTripTest.source(uri, "g", snap), snap == 1 ? null : () -> map,
                    Repository.Progress.NONE);
        }
    }

    private WriterIndex.Loaded load(WriterIndexCache memory) throws Exception {
        try (Repository r = Repository.openForMaintenance(new RepositoryLocation.Directory(repoDir), m -> { })) {
            return WriterIndex.load(r.objects(), r.repoId(), List.of(""), m -> { }, memory);
        }
    }

    /** What a process that never loaded before gets. */
    private Map<Sha256, Ref> fresh() throws Exception {
        return new HashMap<>(load(new WriterIndexCache()).refs());
    }

    private static Set<PackId> packsOnDisk(Path repoDir) throws Exception {
        try (ObjectStore store = Repository.storeFor(new RepositoryLocation.Directory(repoDir))) {
            Set<PackId> packs = new java.util.HashSet<>();
            for (ObjectStore.Entry e : store.list(RepositoryLayout.PACKS + "/")) {
                String name = e.key().substring(e.key().lastIndexOf('/') + 1);
                if (name.endsWith(PackDescriptor.SUFFIX)) {
                    packs.add(PackId.parse(name.substring(0, name.length() - PackDescriptor.SUFFIX.length())));
                }
            }
            return packs;
        }
    }

    @Test
    void aLaterLoadDecodesOnlyTheNewIndexObjectsAndEqualsAFreshLoad() throws Exception {
        backup(0);
        WriterIndex.Loaded first = load(cache);
        assertThat(first.indexObjects()).isEqualTo(1);
        assertThat(first.decoded()).isEqualTo(1);
        assertThat(first.refs()).hasSizeGreaterThanOrEqualTo(BLOCKS);

        WriterIndex.Loaded same = load(cache);
        assertThat(same.decoded()).as("nothing new: nothing decoded").isZero();
        assertThat(same.refs()).isEqualTo(fresh());

        backup(5);
        backup(3);
        WriterIndex.Loaded later = load(cache);
        assertThat(later.indexObjects()).isEqualTo(3);
        assertThat(later.decoded()).as("the two new points' index objects only").isEqualTo(2);
        assertThat(later.refs()).isEqualTo(fresh());
    }

    @Test
    void aWritersCommitAddsItsRefsToTheProcesssStateSoTheNextBackupDecodesNothing() throws Exception {
        backup(0); // through the process's cache, as every writer: its commit adds its own index object
        WriterIndex.Loaded afterFull = load(WriterIndexCache.PROCESS);
        assertThat(afterFull.indexObjects()).isEqualTo(1);
        assertThat(afterFull.decoded()).as("the full point's writer added what it committed").isZero();
        assertThat(afterFull.refs()).isEqualTo(fresh());
        Point inc = backup(9);
        assertThat(inc.kind()).isEqualTo("incremental");
        assertThat(inc.newBytes()).as("the nine changed chunks and some nodes, nothing stored twice")
                .isBetween(9L * BLOCK, 9L * BLOCK + 64 * 1024);
        WriterIndex.Loaded afterInc = load(WriterIndexCache.PROCESS);
        assertThat(afterInc.indexObjects()).isEqualTo(2);
        assertThat(afterInc.decoded()).isZero();
        assertThat(afterInc.refs()).isEqualTo(fresh());
    }

    @Test
    void theLoadedRefsAreReadOnlyForTheWriter() throws Exception {
        backup(0);
        Map<Sha256, Ref> refs = load(cache).refs();
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> refs.put(Sha256.of(new byte[1]), Ref.HOLE))
                .isInstanceOf(UnsupportedOperationException.class);
        // a backup through the process's cache stores what is new in its own map, not in the kept one
        backup(4);
        assertThat(load(cache).refs()).isEqualTo(fresh());
    }

    @Test
    void aGcThatCondemnsPacksOrReplacesIndexObjectsMakesTheNextLoadStartAfresh() throws Exception {
        backup(0);
        backup(BLOCKS / 2);
        backup(BLOCKS / 2);
        assertThat(load(cache).decoded()).isEqualTo(3);
        try (Repository m = Repository.openForMaintenance(new RepositoryLocation.Directory(repoDir), x -> { })) {
            m.prune(new Retention(1, 0, 0, 0), false);
            Repository.GcResult gc = m.gc(Duration.ZERO, false, 1.0);
            assertThat(gc.packsRemoved()).isNotEmpty();
        }
        WriterIndex.Loaded after = load(cache);
        assertThat(after.decoded()).as("every listed index object decoded again").isEqualTo(after.indexObjects());
        assertThat(after.refs()).isEqualTo(fresh());
        Set<PackId> packs = packsOnDisk(repoDir);
        assertThat(after.refs().values()).as("no ref to a pack gc removed")
                .allSatisfy(r -> assertThat(packs).contains(r.pack()));
        // and the next backup deduplicates against what is left and restores
        Point p = backup(2);
        try (Repository r = Repository.openForReading(repoDir)) {
            Path out = dir.resolve("restored.img");
            r.restore(p.id(), out.toString(), Repository.Progress.NONE);
            assertThat(Files.readAllBytes(out)).isEqualTo(current);
            assertThat(r.verify(null).ok()).isTrue();
        }
    }

    @Test
    void aCondemnedListOrADamagedCopyMakesTheNextLoadStartAfreshAndLeavesThemOut() throws Exception {
        backup(0);
        assertThat(load(cache).decoded()).isEqualTo(1);
        Ref victim;
        try (ObjectStore store = Repository.storeFor(new RepositoryLocation.Directory(repoDir))) {
            victim = new PackInventory(store, m -> { }).take().copies().get(Sha256.of(current, 9 * BLOCK, BLOCK)).getFirst();
            assertThat(DamagedCopies.record(store, victim.hash(), Set.of(victim))).isTrue();
        }
        WriterIndex.Loaded damaged = load(cache);
        assertThat(damaged.decoded()).isEqualTo(1);
        assertThat(damaged.refs()).doesNotContainKey(victim.hash()).isEqualTo(fresh());

        PackId condemned = victim.pack();
        try (ObjectStore store = Repository.storeFor(new RepositoryLocation.Directory(repoDir))) {
            store.delete(DamagedCopies.key(victim.hash()));
            store.put(RepositoryLayout.CONDEMNED_PREFIX + "test", WriterIndex.encodeCondemned(Set.of(condemned)));
        }
        WriterIndex.Loaded withCondemned = load(cache);
        assertThat(withCondemned.decoded()).isEqualTo(1);
        assertThat(withCondemned.refs().values()).noneMatch(r -> condemned.equals(r.pack()));
        assertThat(withCondemned.refs()).isEqualTo(fresh());
    }

    @Test
    void aDeletedIndexObjectMakesTheNextLoadStartAfresh() throws Exception {
        backup(0);
        backup(6);
        assertThat(load(cache).decoded()).isEqualTo(2);
        try (ObjectStore store = Repository.storeFor(new RepositoryLocation.Directory(repoDir))) {
            ObjectStore.Entry last = store.list(RepositoryLayout.INDEX + "/").stream()
                    .max(java.util.Comparator.comparing(ObjectStore.Entry::key)).orElseThrow();
            store.delete(last.key());
        }
        WriterIndex.Loaded after = load(cache);
        assertThat(after.indexObjects()).isEqualTo(1);
        assertThat(after.decoded()).isEqualTo(1);
        assertThat(after.refs()).isEqualTo(fresh());
    }

    @Test
    void loadsRacingEachOtherAndABackupReturnWhatAFreshLoadReturns() throws Exception {
        backup(0);
        backup(8);
        int threads = 4;
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        AtomicBoolean stop = new AtomicBoolean();
        try {
            CountDownLatch start = new CountDownLatch(1);
            List<Future<Integer>> loaders = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                loaders.add(pool.submit(() -> {
                    start.await();
                    int loads = 0;
                    while (!stop.get() || loads < 3) {
                        WriterIndex.Loaded l = load(cache);
                        // every ref a load returns names a blob in a pack that exists (no gc runs here;
                        // the refs are the kept map, which another load may grow meanwhile with refs
                        // of newer packs, so each pack is looked up by name, not in an earlier listing)
                        Set<PackId> missing = new java.util.TreeSet<>(java.util.Comparator.comparing(PackId::toString));
                        for (Ref r : l.refs().values()) {
                            if (!Files.isRegularFile(repoDir.resolve(RepositoryLayout.packKey(r.pack())))) {
                                missing.add(r.pack());
                            }
                        }
                        assertThat(missing).as("packs the refs name that do not exist").isEmpty();
                        assertThat(l.refs().size()).isGreaterThanOrEqualTo(BLOCKS);
                        loads++;
                    }
                    return loads;
                }));
            }
            start.countDown();
            for (int i = 0; i < 4; i++) {
                backup(7);
            }
            stop.set(true);
            for (Future<Integer> f : loaders) {
                assertThat(f.get()).isGreaterThanOrEqualTo(3);
            }
        } finally {
            stop.set(true);
            pool.shutdownNow();
        }
        WriterIndex.Loaded settled = load(cache);
        assertThat(settled.indexObjects()).isEqualTo(6);
        assertThat(settled.refs()).isEqualTo(fresh());
    }
}
