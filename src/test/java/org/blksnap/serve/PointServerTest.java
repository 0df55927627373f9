package org.blksnap.serve;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.blksnap.backup.Point;
import org.blksnap.engine.BlockDevice;
import org.blksnap.nbd.Export;
import org.blksnap.nbd.ExportInfo;
import org.blksnap.testing.RepoFiles;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The server's exports and devices in-process (the NBD side is the project's server, tested on
 * its own; the system test {@code e2e/ServeTest} drives all of it with real clients).
 */
class PointServerTest {
    static final int CHUNK = 64 << 10;
    static final int SIZE = 4 << 20; // 64 chunks: 32 random, 16 text, 16 zero

    @TempDir
    Path dir;

    private PointServer start(Path repo, boolean writable, long cacheBytes) throws Exception {
        Files.createDirectories(dir.resolve("overlays"));
        return PointServer.start(new PointServer.Config(repo, dir.resolve("serve.sock"), null, 0, writable, cacheBytes,
                dir.resolve("overlays"), PointServer.READ_AHEAD_BYTES), m -> { });
    }

    private static byte[] read(BlockDevice d, long offset, int length) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(length);
        d.read(b, offset);
        assertThat(b.hasRemaining()).isFalse();
        return b.array();
    }

    @Test
    void everyPointIsAnExportNamedPointIdSlashDeviceAndNewPointsAppearWhileServing() throws Exception {
        Path repo = dir.resolve("repo");
        Point p1 = TestRepo.backup(repo, dir, "disk0", TestRepo.content(SIZE, 1), CHUNK);
        try (PointServer s = start(repo, false, 1 << 20)) {
            assertThat(s.exports().list()).containsExactly(new ExportInfo(p1.id() + "/disk0", "device disk0, "
                    + p1.time() + ", full, " + SIZE + " bytes, read-only"));
            Point p2 = TestRepo.backup(repo, dir, "disk1", TestRepo.content(SIZE / 2, 2), CHUNK);
            assertThat(s.exports().list()).extracting(ExportInfo::name).containsExactly(p1.id() + "/disk0", p2.id() + "/disk1");
            assertThat(s.exportNames()).containsExactly(p1.id() + "/disk0", p2.id() + "/disk1");
            try (Export e = s.exports().open(p2.id() + "/disk1")) {
                assertThat(e.readOnly()).isTrue();
                assertThat(e.device().sizeBytes()).isEqualTo(SIZE / 2);
                assertThat(read(e.device(), 0, SIZE / 2)).isEqualTo(TestRepo.content(SIZE / 2, 2));
            }
            assertThat(s.exports().open(p1.id() + "/disk1")).as("a point of another device").isNull();
            assertThat(s.exports().open("20991231-000000-abcdef/disk0")).isNull();
            assertThat(s.exports().open("disk0")).isNull();
            assertThat(s.exports().open("../../etc/passwd/x")).isNull();
        }
        assertThat(dir.resolve("serve.sock")).doesNotExist();
    }

    @Test
    void concurrentReadersOfAnyRangeGetThePointsBytesWhileTheCacheEvicts() throws Exception {
        Path repo = dir.resolve("repo");
        byte[] content = TestRepo.content(SIZE, 3);
        Point p = TestRepo.backup(repo, dir, "disk0", content, CHUNK);
        try (PointServer s = start(repo, false, 8 * CHUNK); Export e = s.exports().open(p.id() + "/disk0")) {
            BlockDevice d = e.device();
            TestRepo.inParallel(16, t -> {
                long seed = t;
                Random r = new Random(seed);
                for (int i = 0; i < 300; i++) {
                    int len = 1 + r.nextInt(r.nextBoolean() ? 4096 : 3 * CHUNK);
                    int off = r.nextInt(SIZE - len + 1);
                    assertThat(read(d, off, len)).as("read %d+%d", off, len)
                            .isEqualTo(Arrays.copyOfRange(content, off, off + len));
                }
            });
            ChunkCache.Stats st = s.cache().stats();
            assertThat(st.evictions()).isPositive();
            assertThat(st.usedBytes()).isLessThanOrEqualTo(8L * CHUNK).isEqualTo(s.cache().recountBytes());
        }
    }

    @Test
    void holesReadAsZerosAndTheAllocationMapReportsThem() throws Exception {
        Path repo = dir.resolve("repo");
        Point p = TestRepo.backup(repo, dir, "disk0", TestRepo.content(SIZE, 4), CHUNK);
        try (PointServer s = start(repo, false, 1 << 20); Export e = s.exports().open(p.id() + "/disk0")) {
            assertThat(e.sparseReads()).isTrue();
            List<String> extents = new ArrayList<>();
            e.device().mapAllocation(0, SIZE, (len, hole) -> extents.add(len + (hole ? " hole" : " data")));
            assertThat(extents).containsExactly(SIZE * 3 / 4 + " data", SIZE / 4 + " hole");
            extents.clear();
            e.device().mapAllocation(SIZE - CHUNK - 100, 50, (len, hole) -> extents.add(len + (hole ? " hole" : " data")));
            assertThat(extents).as("from inside a chunk, to its end").containsExactly("100 hole");
            assertThat(read(e.device(), SIZE - 3 * CHUNK - 10, 3 * CHUNK)).isEqualTo(new byte[3 * CHUNK]);
        }
    }

    @Test
    void sequentialReadsAreReadAheadIntoTheCache() throws Exception {
        Path repo = dir.resolve("repo");
        byte[] content = TestRepo.content(SIZE, 5);
        Point p = TestRepo.backup(repo, dir, "disk0", content, CHUNK);
        PointServer s = start(repo, false, 64L << 20);
        try (s; Export e = s.exports().open(p.id() + "/disk0")) {
            for (int off = 0; off < SIZE / 2; off += 32 << 10) {
                assertThat(read(e.device(), off, 32 << 10)).isEqualTo(Arrays.copyOfRange(content, off, off + (32 << 10)));
            }
            PointDevice d = s.exports().served().get(p.id() + "/disk0").device();
            // prefetches run beside the reader: the count rises as they finish
            org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30))
                    .untilAsserted(() -> assertThat(d.readAhead().prefetchedChunks())
                            .as("chunks loaded ahead of a sequential reader").isPositive());
            // random reads start no read-ahead; the sequential reader's prefetches still in flight are let finish first
            org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30))
                    .until(() -> s.readAheadPermitsFree() == PointServer.READ_AHEAD_IN_FLIGHT);
            long before = d.readAhead().prefetchedChunks();
            Random r = new Random(6);
            for (int i = 0; i < 50; i++) {
                read(e.device(), (long) r.nextInt(SIZE / 4096) * 4096, 4096);
            }
            org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30))
                    .until(() -> s.readAheadPermitsFree() == PointServer.READ_AHEAD_IN_FLIGHT);
            assertThat(d.readAhead().prefetchedChunks() - before).isLessThan(5);
        }
        assertThat(s.statsLine()).containsPattern("; [1-9][0-9]* chunks read ahead;");
    }

    /** Forbidden: wrong data, or a read-ahead permit that is never given back (read-ahead would stop for good). */
    @Test
    void manySequentialReadersAtOnceGetTheirBytesAndEveryReadAheadPermitComesBack() throws Exception {
        Path repo = dir.resolve("repo");
        byte[] content = TestRepo.content(SIZE, 11);
        Point p = TestRepo.backup(repo, dir, "disk0", content, CHUNK);
        try (PointServer s = start(repo, false, 16L * CHUNK); Export e = s.exports().open(p.id() + "/disk0")) {
            TestRepo.inParallel(12, t -> {
                int start = t * (SIZE / 16);
                int step = 4096 << (t % 5);
                for (int off = start; off + step <= SIZE; off += step) {
                    assertThat(read(e.device(), off, step)).as("read %d+%d", off, step)
                            .isEqualTo(Arrays.copyOfRange(content, off, off + step));
                }
            });
            org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(10))
                    .until(() -> s.readAheadPermitsFree() == PointServer.READ_AHEAD_IN_FLIGHT);
            assertThat(s.exports().served().get(p.id() + "/disk0").device().readAhead().prefetchedChunks()).isPositive();
        }
    }

    @Test
    void aDamagedChunkFailsEveryReadOfItWithAnErrorNamingThePointAndTheChunkAndOthersGoOn() throws Exception {
        Path repo = dir.resolve("repo");
        byte[] content = TestRepo.content(SIZE, 7);
        Point p = TestRepo.backup(repo, dir, "disk0", content, CHUNK);
        TestRepo.damage(repo, Arrays.copyOfRange(content, 3 * CHUNK, 4 * CHUNK));
        try (PointServer s = start(repo, false, 1 << 20); Export e = s.exports().open(p.id() + "/disk0")) {
            for (int attempt = 0; attempt < 2; attempt++) {
                assertThatThrownBy(() -> read(e.device(), 3L * CHUNK + 100, 10)).isInstanceOf(IOException.class)
                        .hasMessageContaining("DAMAGED").hasMessageContaining("point " + p.id())
                        .hasMessageContaining("chunk 3 ").hasMessageContaining("does not hash to its name");
            }
            assertThatThrownBy(() -> read(e.device(), 0, SIZE)).isInstanceOf(IOException.class)
                    .hasMessageContaining("chunk 3 ");
            assertThat(read(e.device(), 0, 3 * CHUNK)).isEqualTo(Arrays.copyOf(content, 3 * CHUNK));
            assertThat(read(e.device(), 4L * CHUNK, CHUNK)).isEqualTo(Arrays.copyOfRange(content, 4 * CHUNK, 5 * CHUNK));
            assertThat(s.statsLine()).contains("3 reads failed on damaged chunks");
        }
    }

    @Test
    void theOverlayTakesWritesOfAnyShapeAndTheRepositoryStaysByteForByteUnchanged() throws Exception {
        Path repo = dir.resolve("repo");
        byte[] content = TestRepo.content(SIZE, 8);
        Point p = TestRepo.backup(repo, dir, "disk0", content, CHUNK);
        Map<String, String> before = RepoFiles.checksums(repo);
        byte[] model = content.clone();
        PointServer s = start(repo, true, 1 << 20);
        try (s; Export e = s.exports().open(p.id() + "/disk0")) {
            assertThat(e.readOnly()).isFalse();
            BlockDevice d = e.device();
            Random r = new Random(9);
            for (int i = 0; i < 300; i++) {
                int len = 1 + r.nextInt(r.nextBoolean() ? 9000 : 3 * CHUNK);
                int off = r.nextInt(SIZE - len + 1);
                switch (r.nextInt(4)) {
                    case 0, 1 -> {
                        byte[] data = new byte[len];
                        r.nextBytes(data);
                        d.write(ByteBuffer.wrap(data), off);
                        System.arraycopy(data, 0, model, off, len);
                    }
                    case 2 -> {
                        d.writeZeroes(off, len, r.nextBoolean());
                        Arrays.fill(model, off, off + len, (byte) 0);
                    }
                    default -> assertThat(read(d, off, len)).as("read %d+%d", off, len)
                            .isEqualTo(Arrays.copyOfRange(model, off, off + len));
                }
            }
            assertThat(read(d, 0, SIZE)).isEqualTo(model);
            // allocation: a block written in the hole quarter is data now
            d.write(ByteBuffer.wrap(new byte[] {1}), SIZE - 4096);
            model[SIZE - 4096] = 1;
            List<long[]> extents = new ArrayList<>();
            d.mapAllocation(0, SIZE, (len, hole) -> extents.add(new long[] {len, hole ? 1 : 0}));
            long pos = 0;
            for (long[] x : extents) {
                if (x[1] == 1) {
                    for (long b = pos; b < pos + x[0]; b++) {
                        assertThat(model[(int) b]).as("byte %d in a reported hole", b).isZero();
                    }
                }
                pos += x[0];
            }
            assertThat(pos).isEqualTo(SIZE);
            assertThat(extents.getLast()).containsExactly(4096, 0);
            try (var files = Files.list(dir.resolve("overlays"))) {
                assertThat(files.toList()).as("the overlay file is unlinked while open").isEmpty();
            }
        }
        assertThat(RepoFiles.checksums(repo)).isEqualTo(before);
        assertThat(s.statsLine()).as("the counters outlive the server").containsPattern("; [1-9][0-9]* bytes in overlays");
    }

    @Test
    void concurrentPartialWritesToOneOverlayBlockAreNeverLost() throws Exception {
        Path repo = dir.resolve("repo");
        byte[] content = TestRepo.content(SIZE, 10);
        Point p = TestRepo.backup(repo, dir, "disk0", content, CHUNK);
        try (PointServer s = start(repo, true, 1 << 20); Export e = s.exports().open(p.id() + "/disk0")) {
            BlockDevice d = e.device();
            // 8 writers each own 512 bytes of every one of 16 blocks; each read-modify-write of a block
            // that is not yet in the overlay must not undo another writer's bytes
            int writers = 8;
            TestRepo.inParallel(writers, w -> {
                int writer = w;
                for (int block = 0; block < 16; block++) {
                    byte[] data = new byte[512];
                    Arrays.fill(data, (byte) (writer + 1));
                    d.write(ByteBuffer.wrap(data), block * 4096L + writer * 512L);
                }
            });
            byte[] got = read(d, 0, 16 * 4096);
            for (int block = 0; block < 16; block++) {
                for (int w = 0; w < writers; w++) {
                    for (int i = 0; i < 512; i++) {
                        assertThat(got[block * 4096 + w * 512 + i]).as("block %d writer %d", block, w).isEqualTo((byte) (w + 1));
                    }
                }
            }
        }
    }
}
