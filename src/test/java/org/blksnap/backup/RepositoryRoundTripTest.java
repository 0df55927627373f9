package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Random;
import java.util.UUID;
import org.blksnap.nbd.FileExportServer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The repository against the project's real NBD server (in-process, a file export): full and
 * incremental points restore bit for bit on their own; an incremental reads exactly the blocks the
 * CBT map names; verify finds a damaged chunk and names the points that use it.
 */
class RepositoryRoundTripTest {
    static final int BLOCK = 64 << 10;
    static final long SIZE = 8L << 20; // 128 blocks
    static final int BLOCKS = (int) (SIZE / BLOCK);

    @TempDir
    Path dir;

    /** Half random, a quarter repeated text, a quarter zeros: as a disk is. */
    static byte[] initialContent(long seed) {
        byte[] data = new byte[(int) SIZE];
        new Random(seed).nextBytes(data);
        byte[] line = "the quick brown fox jumps over the lazy dog 0123456789\n".getBytes(StandardCharsets.US_ASCII);
        for (int i = (int) (SIZE / 2); i < SIZE * 3 / 4; i++) {
            data[i] = line[i % line.length];
        }
        java.util.Arrays.fill(data, (int) (SIZE * 3 / 4), (int) SIZE, (byte) 0);
        return data;
    }

    static void write(String uri, long offset, byte[] data) throws Exception {
        try (NbdClient c = NbdClient.connect(uri)) {
            for (int done = 0; done < data.length; done += 1 << 20) {
                int n = Math.min(1 << 20, data.length - done);
                c.write(offset + done, ByteBuffer.wrap(data, done, n));
            }
            c.flush();
        }
    }

    static Repository.BackupSource source(String uri, String generation, long snapNumber) {
        return new Repository.BackupSource("disk0", uri, SIZE, BLOCK, generation, snapNumber);
    }

    @Test
    void fullThenIncrementalPointsEachRestoreBitForBitAndTheIncrementalReadsOnlyChangedBlocks() throws Exception {
        Path repoDir = dir.resolve("repo");
        String gen = UUID.randomUUID().toString();
        try (FileExportServer nbd = new FileExportServer(dir, SIZE, "disk0")) {
            String uri = nbd.uri("disk0");
            byte[] v1 = initialContent(1);
            write(uri, 0, v1);
            Point full;
            Point inc;
            byte[] v2 = v1.clone();
            byte[] map = new byte[BLOCKS];
            java.util.Arrays.fill(map, (byte) 1);
            try (Repository repo = Repository.openForWriting(repoDir, 1 << 20, m -> { })) {
                full = repo.backup(source(uri, gen, 1), () -> { throw new AssertionError("a full backup reads no map"); },
                        Repository.Progress.NONE);
                assertThat(full.kind()).isEqualTo("full");
                assertThat(full.reason()).contains("no earlier point");
                assertThat(full.bytesRead()).isEqualTo(SIZE);

                // change blocks 3, 40..41 (random), 100 (zeros -> text), 127 (last)
                Random r = new Random(2);
                for (int b : new int[] {3, 40, 41, 100, 127}) {
                    byte[] chunk = new byte[BLOCK];
                    r.nextBytes(chunk);
                    System.arraycopy(chunk, 0, v2, b * BLOCK, BLOCK);
                    write(uri, (long) b * BLOCK, chunk);
                    map[b] = 2;
                }
                inc = repo.backup(source(uri, gen, 2), () -> map, Repository.Progress.NONE);
            }
            assertThat(inc.kind()).isEqualTo("incremental");
            assertThat(inc.reason()).contains(full.id());
            assertThat(inc.bytesRead()).isEqualTo(5L * BLOCK);
            assertThat(inc.newBytes()).as("5 random chunks and the nodes above them")
                    .isBetween(5L * BLOCK, 5L * BLOCK + 5 * 3000L + 64 * 1024);

            try (Repository repo = Repository.openForReading(repoDir)) {
                assertThat(repo.points()).extracting(Point::id).containsExactly(full.id(), inc.id());
                Path f1 = dir.resolve("restored1.img");
                Path f2 = dir.resolve("restored2.img");
                Repository.RestoreResult r1 = repo.restore(full.id(), f1.toString(), Repository.Progress.NONE);
                repo.restore(inc.id(), f2.toString(), Repository.Progress.NONE);
                assertThat(Files.readAllBytes(f1)).isEqualTo(v1);
                assertThat(Files.readAllBytes(f2)).isEqualTo(v2);
                assertThat(r1.zeroBytes()).as("the zero quarter is a hole").isEqualTo(SIZE / 4);
                assertThat(repo.verify(null).ok()).isTrue();
                assertThatThrownBy(() -> repo.restore(full.id(), f1.toString(), Repository.Progress.NONE))
                        .isInstanceOfSatisfying(RepositoryException.class,
                                e -> assertThat(e.code()).isEqualTo(RepositoryException.Code.TARGET));
                // restore to an NBD export
                try (FileExportServer other = new FileExportServer(Files.createDirectories(dir.resolve("o")), SIZE, "t")) {
                    repo.restore(inc.id(), other.uri("t"), Repository.Progress.NONE);
                }
                assertThat(Files.readAllBytes(dir.resolve("o/t.img"))).isEqualTo(v2);
                // a target smaller than the point: refused before anything is written
                try (FileExportServer small = new FileExportServer(Files.createDirectories(dir.resolve("s")), SIZE / 2, "t")) {
                    assertThatThrownBy(() -> repo.restore(inc.id(), small.uri("t"), Repository.Progress.NONE))
                            .isInstanceOfSatisfying(RepositoryException.class, e -> {
                                assertThat(e.code()).isEqualTo(RepositoryException.Code.TARGET);
                                assertThat(e.getMessage()).contains("smaller than point " + inc.id());
                            });
                }
            }
        }
    }

    @Test
    void aNewGenerationOrALowerSnapshotNumberGivesAFullPointWithTheReason() throws Exception {
        Path repoDir = dir.resolve("repo");
        try (FileExportServer nbd = new FileExportServer(dir, SIZE, "disk0");
             Repository repo = Repository.openForWriting(repoDir, 1 << 20, m -> { })) {
            String uri = nbd.uri("disk0");
            write(uri, 0, initialContent(3));
            repo.backup(source(uri, "g1", 4), null, Repository.Progress.NONE);
            Point again = repo.backup(source(uri, "g1", 4), null, Repository.Progress.NONE);
            assertThat(again.kind()).isEqualTo("full");
            assertThat(again.reason()).contains("snapshot number 4 is not above");
            Point reset = repo.backup(source(uri, "g2", 5), null, Repository.Progress.NONE);
            assertThat(reset.kind()).isEqualTo("full");
            assertThat(reset.reason()).contains("new CBT generation g2");
            assertThat(reset.newBytes()).as("every chunk is in the repository already: only nothing new").isZero();
        }
    }

    @Test
    void verifyNamesEveryPointThatUsesADamagedChunkAndRestoreRefusesIt() throws Exception {
        Path repoDir = dir.resolve("repo");
        String gen = "g";
        Point p1;
        Point p2;
        try (FileExportServer nbd = new FileExportServer(dir, SIZE, "disk0");
             Repository repo = Repository.openForWriting(repoDir, 1 << 20, m -> { })) {
            String uri = nbd.uri("disk0");
            write(uri, 0, initialContent(4));
            p1 = repo.backup(source(uri, gen, 1), null, Repository.Progress.NONE);
            byte[] map = new byte[BLOCKS];
            map[5] = 2;
            write(uri, 5L * BLOCK, new byte[BLOCK]);
            p2 = repo.backup(source(uri, gen, 2), () -> map, Repository.Progress.NONE);
        }
        // damage one byte in the middle of the first chunk of the first pack: the first random chunk
        Path pack;
        try (var s = Files.list(repoDir.resolve("packs"))) {
            pack = s.filter(p -> {
                try (FileChannel ch = FileChannel.open(p)) {
                    ByteBuffer b = ByteBuffer.allocate(PackDescriptor.HEADER_BYTES + PackDescriptor.BLOB_HEADER_BYTES);
                    ch.read(b, 0);
                    return b.getInt(PackDescriptor.HEADER_BYTES + PackDescriptor.BLOB_TYPE_OFFSET) >>> 24 == NodeDescriptor.KIND_CHUNK
                            && b.getInt(PackDescriptor.HEADER_BYTES + PackDescriptor.BLOB_RAW_LENGTH_OFFSET) == BLOCK;
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            }).findFirst().orElseThrow();
        }
        try (FileChannel ch = FileChannel.open(pack, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            long at = PackDescriptor.HEADER_BYTES + PackDescriptor.BLOB_HEADER_BYTES + 1000;
            ByteBuffer b = ByteBuffer.allocate(1);
            ch.read(b, at);
            b.put(0, (byte) (b.get(0) ^ 0x40)).rewind();
            ch.write(b, at);
        }
        try (Repository repo = Repository.openForReading(repoDir)) {
            Repository.VerifyReport report = repo.verify(null);
            assertThat(report.ok()).isFalse();
            assertThat(report.problems()).hasSize(1);
            Repository.Problem problem = report.problems().getFirst();
            assertThat(problem.what()).startsWith("chunk ").contains(pack.getFileName().toString().substring(0, 32));
            assertThat(problem.why()).contains("does not hash to its name");
            assertThat(problem.points()).containsExactly(p1.id(), p2.id());
            assertThat(repo.verify(p2.id()).problems().getFirst().points()).containsExactly(p2.id());
            assertThatThrownBy(() -> repo.restore(p1.id(), dir.resolve("x.img").toString(), Repository.Progress.NONE))
                    .isInstanceOfSatisfying(RepositoryException.class,
                            e -> assertThat(e.code()).isEqualTo(RepositoryException.Code.DAMAGED));
            assertThat(dir.resolve("x.img")).doesNotExist();
            assertThat(dir.resolve("x.img.partial")).doesNotExist();
        }
    }

    @Test
    void aDamagedNewestManifestIsPassedOverAndTheOlderPointIsTheBase() throws Exception {
        Path repoDir = dir.resolve("repo");
        try (FileExportServer nbd = new FileExportServer(dir, SIZE, "disk0")) {
            String uri = nbd.uri("disk0");
            write(uri, 0, initialContent(5));
            Point first;
            Point second;
            try (Repository repo = Repository.openForWriting(repoDir, 1 << 20, m -> { })) {
                first = repo.backup(source(uri, "g", 1), null, Repository.Progress.NONE);
                second = repo.backup(source(uri, "g", 2), () -> new byte[BLOCKS], Repository.Progress.NONE);
            }
            Path manifest = repoDir.resolve("points/" + second.id() + ".point");
            Files.writeString(manifest, Files.readString(manifest).replace("incremental", "incrementaX"));
            byte[] map = new byte[BLOCKS];
            map[7] = 2; // changed after snapshot 1, so also after snapshot 2's base: read against point 1
            map[9] = 3;
            List<String> warnings = new java.util.ArrayList<>();
            try (Repository repo = Repository.openForWriting(repoDir, 1 << 20, warnings::add)) {
                Point third = repo.backup(source(uri, "g", 3), () -> map, Repository.Progress.NONE);
                assertThat(third.kind()).isEqualTo("incremental");
                assertThat(third.reason()).contains(first.id());
                assertThat(third.bytesRead()).isEqualTo(2L * BLOCK);
            }
            assertThat(warnings).singleElement().asString().contains(manifest.toString()).contains("passed over");
        }
    }

    @Test
    void trackingBlocksLargerThanOneNbdRequestAreReadInPiecesAndRoundTrip() throws Exception {
        int bigBlock = 8 << 20; // tracking_block_minimum_shift can make blocks up to 64 MiB; requests stay <= 4 MiB
        long size = 32L << 20;
        try (FileExportServer nbd = new FileExportServer(dir, size, "big");
             Repository repo = Repository.openForWriting(dir.resolve("repo"), 1 << 20, m -> { })) {
            String uri = nbd.uri("big");
            byte[] data = new byte[(int) size];
            new Random(9).nextBytes(data);
            write(uri, 0, data);
            Point full = repo.backup(new Repository.BackupSource("big", uri, size, bigBlock, "g", 1), null,
                    Repository.Progress.NONE);
            byte[] changed = new byte[1 << 20];
            new Random(10).nextBytes(changed);
            write(uri, 17L << 20, changed);
            System.arraycopy(changed, 0, data, 17 << 20, changed.length);
            Point inc = repo.backup(new Repository.BackupSource("big", uri, size, bigBlock, "g", 2),
                    () -> new byte[] {1, 1, 2, 1}, Repository.Progress.NONE);
            assertThat(inc.kind()).isEqualTo("incremental");
            assertThat(inc.bytesRead()).isEqualTo(bigBlock);
            Path out = dir.resolve("big-restored.img");
            repo.restore(inc.id(), out.toString(), Repository.Progress.NONE);
            assertThat(Files.readAllBytes(out)).isEqualTo(data);
            assertThat(repo.verify(full.id()).ok()).isTrue();
        }
    }

    @Test
    void anUnknownPointIsNotFound() throws Exception {
        try (Repository repo = Repository.openForWriting(dir.resolve("repo"), 1 << 20, m -> { })) {
            assertThatThrownBy(() -> repo.point("20990101-000000-abcdef"))
                    .isInstanceOfSatisfying(RepositoryException.class,
                            e -> assertThat(e.code()).isEqualTo(RepositoryException.Code.NOT_FOUND));
            assertThat(repo.points()).isEqualTo(List.of());
        }
    }
}
