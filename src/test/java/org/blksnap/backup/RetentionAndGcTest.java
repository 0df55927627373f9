package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.blksnap.nbd.FileExportServer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Retention policies, prune and gc: what is kept, what goes, and that what is kept still restores. */
class RetentionAndGcTest {
    @TempDir
    Path dir;

    static Point at(String device, String time) {
        return new Point(time.replaceAll("[^0-9]", "").substring(0, 14) + "-" + device, device, time, "full", "", "g", 1,
                1 << 20, 65536, 32, ManifestDescriptor.rootHex(Ref.HOLE), 0, 0, 0, "h1");
    }

    static List<String> kept(Retention r, List<Point> points) {
        return r.apply(points).stream().filter(Retention.Decision::keep).map(d -> d.point().time()).toList();
    }

    @Test
    void keepLastDailyWeeklyAndMonthlyCountAsResticDoesPerDevice() {
        List<Point> points = new ArrayList<>();
        for (String t : List.of("2026-10-30T10:00:00Z", "2026-11-15T10:00:00Z", "2026-11-28T09:00:00Z",
                "2026-11-30T08:00:00Z", "2026-12-01T08:00:00Z", "2026-12-01T20:00:00Z", "2026-12-02T08:00:00Z")) {
            points.add(at("disk0", t));
        }
        points.add(at("disk1", "2026-01-01T00:00:00Z"));
        assertThat(kept(new Retention(2, 0, 0, 0), points))
                .containsExactly("2026-12-02T08:00:00Z", "2026-12-01T20:00:00Z", "2026-01-01T00:00:00Z");
        assertThat(kept(new Retention(0, 3, 0, 0), points)).as("the newest point of each of the 3 newest days")
                .containsExactly("2026-12-02T08:00:00Z", "2026-12-01T20:00:00Z", "2026-11-30T08:00:00Z",
                        "2026-01-01T00:00:00Z");
        // ISO weeks: 12-02 and 12-01 and 11-30 are week 49 (Mon 11-30); 11-28 week 48; 11-15 week 46
        assertThat(kept(new Retention(0, 0, 2, 0), points))
                .containsExactly("2026-12-02T08:00:00Z", "2026-11-28T09:00:00Z", "2026-01-01T00:00:00Z");
        assertThat(kept(new Retention(0, 0, 0, 3), points))
                .containsExactly("2026-12-02T08:00:00Z", "2026-11-30T08:00:00Z", "2026-10-30T10:00:00Z",
                        "2026-01-01T00:00:00Z");
        List<Retention.Decision> d = new Retention(1, 1, 0, 0).apply(points);
        assertThat(d.getFirst().reasons()).containsExactly("last 1", "daily 2026-12-02");
        assertThatThrownBy(() -> new Retention(0, 0, 0, 0)).hasMessageContaining("must keep something");
        assertThatThrownBy(() -> new Retention(-1, 1, 0, 0)).hasMessageContaining("must be >= 0");
    }

    @Test
    void pruneThenGcRemovesThePacksOnlyRemovedPointsUsedAndTheKeptPointStillRestores() throws Exception {
        Path repoDir = dir.resolve("repo");
        long size = RepositoryRoundTripTest.SIZE;
        try (FileExportServer nbd = new FileExportServer(dir, size, "disk0")) {
            String uri = nbd.uri("disk0");
            byte[] a = RepositoryRoundTripTest.initialContent(10);
            byte[] b = new byte[(int) size]; // shares no chunk with a: every pack of the first point becomes unused
            new java.util.Random(11).nextBytes(b);
            Point first;
            Point second;
            try (Repository repo = Repository.openForWriting(repoDir, 1 << 20, m -> { })) {
                RepositoryRoundTripTest.write(uri, 0, a);
                first = repo.backup(RepositoryRoundTripTest.source(uri, "g1", 1), null, Repository.Progress.NONE);
                RepositoryRoundTripTest.write(uri, 0, b);
                second = repo.backup(RepositoryRoundTripTest.source(uri, "g2", 1), null, Repository.Progress.NONE);
            }
            long packsBefore = count(repoDir.resolve("packs"));
            try (Repository repo = Repository.openForMaintenance(new RepositoryLocation.Directory(repoDir), m -> { })) {
                List<Retention.Decision> dry = repo.prune(new Retention(1, 0, 0, 0), true);
                assertThat(dry).extracting(x -> x.point().id(), Retention.Decision::keep)
                        .containsExactly(org.assertj.core.groups.Tuple.tuple(second.id(), true),
                                org.assertj.core.groups.Tuple.tuple(first.id(), false));
                assertThat(repo.points()).hasSize(2);
                Repository.GcResult young = repo.gc(Duration.ofHours(1), false);
                assertThat(young.packsRemoved()).isEmpty();
                repo.prune(new Retention(1, 0, 0, 0), false);
                assertThat(repo.points()).extracting(Point::id).containsExactly(second.id());
                Repository.GcResult dryGc = repo.gc(Duration.ZERO, true);
                assertThat(dryGc.packsRemoved()).isNotEmpty();
                assertThat(count(repoDir.resolve("packs"))).isEqualTo(packsBefore);
                Repository.GcResult gc = repo.gc(Duration.ZERO, false);
                assertThat(gc.packsRemoved()).isEqualTo(dryGc.packsRemoved());
                assertThat(count(repoDir.resolve("packs"))).isEqualTo(packsBefore - gc.packsRemoved().size());
                assertThat(gc.bytesRemoved()).as("the random half of the first content, at least").isGreaterThan(size / 2);
            }
            try (Repository repo = Repository.openForReading(repoDir)) {
                assertThat(repo.verify(null).ok()).isTrue();
                Path out = dir.resolve("b.img");
                repo.restore(second.id(), out.toString(), Repository.Progress.NONE);
                assertThat(Files.readAllBytes(out)).isEqualTo(b);
            }
        }
    }

    @Test
    void twoGcRunsAtOnceCollideWithLockedAndAWriterDoesNotBlockEither() throws Exception {
        Path repoDir = dir.resolve("repo");
        RepositoryLocation where = new RepositoryLocation.Directory(repoDir);
        try (Repository writer = Repository.openForWriting(repoDir, 1 << 20, m -> { });
             Repository other = Repository.openForWriting(where, "otherhost", 1 << 20, m -> { })) {
            writer.recordSession(Map.of("snapshot", "x"));
            try (Repository gc = Repository.openForMaintenance(where, m -> { })) {
                assertThat(gc.gc(Duration.ZERO, false).packsRemoved()).isEmpty();
                // a gc that died holding the lock, or one running now: its lock object is live
                Files.writeString(repoDir.resolve("gc/lock-0123456789abcdef"), "host elsewhere\npid 42\n");
                assertThatThrownBy(() -> gc.gc(Duration.ZERO, false))
                        .isInstanceOfSatisfying(RepositoryException.class, e -> {
                            assertThat(e.code()).isEqualTo(RepositoryException.Code.LOCKED);
                            assertThat(e.getMessage()).contains("another gc is running").contains("host elsewhere, pid 42");
                        });
                try (var left = Files.list(repoDir.resolve("gc"))) {
                    assertThat(left.map(p -> p.getFileName().toString())).as("the refused run removed its own lock")
                            .containsExactly("lock-0123456789abcdef");
                }
            }
        }
    }

    private static long count(Path d) throws Exception {
        try (Stream<Path> s = Files.list(d)) {
            return s.count();
        }
    }
}
