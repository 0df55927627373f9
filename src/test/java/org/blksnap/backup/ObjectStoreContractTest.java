package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Random;
import org.blksnap.nbd.FileExportServer;
import org.blksnap.testing.S3ServerExtension;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The storage seam's contract, the same checks on a directory and on a real S3 server (s3proxy,
 * or BLKSNAP_TEST_S3_ENDPOINT): whole objects, byte ranges, listing by prefix, deletes, objects
 * visible only when complete (an upload in progress or aborted is invisible; a multipart upload
 * of several parts reads back whole), and a repository's full and incremental points round trip.
 */
class ObjectStoreContractTest {
    @RegisterExtension
    static final S3ServerExtension s3 = new S3ServerExtension();

    @TempDir
    Path dir;

    private RepositoryLocation location(String kind) {
        return switch (kind) {
            case "dir" -> new RepositoryLocation.Directory(dir.resolve("repo"));
            case "s3" -> RepositoryLocation.parse(s3.newRepo("contract"), s3.endpoint().toString());
            default -> throw new IllegalArgumentException(kind);
        };
    }

    private ObjectStore store(String kind) {
        RepositoryLocation where = location(kind);
        return where instanceof RepositoryLocation.S3 s ? new S3Store(s, 5 << 20) : Repository.storeFor(where);
    }

    @ParameterizedTest
    @ValueSource(strings = {"dir", "s3"})
    void wholeObjectsRangesListingAndDeletes(String kind) throws Exception {
        try (ObjectStore o = store(kind)) {
            byte[] a = "hello, repository".getBytes(StandardCharsets.UTF_8);
            o.put("points/a.point", a);
            o.put("points/b.point", new byte[] {1, 2, 3});
            o.put("packs/c.pack", new byte[100]);
            assertThat(o.get("points/a.point", 1000)).isEqualTo(a);
            assertThat(o.sizeBytes("points/a.point")).isEqualTo(a.length);
            ByteBuffer r = o.read("points/a.point", 7, 5);
            assertThat(new String(r.array(), r.arrayOffset() + r.position(), r.remaining(), StandardCharsets.UTF_8))
                    .isEqualTo("repos");
            assertThat(o.read("points/a.point", a.length - 3, 10).remaining()).as("the object ends first").isEqualTo(3);
            assertThat(o.read("points/a.point", a.length + 5, 10).remaining()).isZero();
            assertThat(o.list("points/")).extracting(ObjectStore.Entry::key).containsExactly("points/a.point", "points/b.point");
            assertThat(o.list("points/a")).extracting(ObjectStore.Entry::key).containsExactly("points/a.point");
            assertThat(o.list("points/")).allSatisfy(e -> assertThat(e.lastModified()).isBefore(Instant.now().plusSeconds(5)));
            assertThatThrownBy(() -> o.get("points/a.point", 5)).isInstanceOfSatisfying(RepositoryException.class,
                    e -> assertThat(e.code()).isEqualTo(RepositoryException.Code.DAMAGED));
            assertThatThrownBy(() -> o.get("points/none.point", 5)).isInstanceOfSatisfying(RepositoryException.class, e -> {
                assertThat(e.code()).isEqualTo(RepositoryException.Code.NOT_FOUND);
                assertThat(e.getMessage()).contains(o.describe("points/none.point"));
            });
            assertThat(o.putIfAbsent("points/a.point", new byte[] {9})).isFalse();
            assertThat(o.get("points/a.point", 1000)).isEqualTo(a);
            assertThat(o.putIfAbsent("points/new.point", new byte[] {9})).isTrue();
            o.delete("points/b.point");
            o.delete("points/b.point");
            assertThat(o.list("points/")).extracting(ObjectStore.Entry::key).containsExactly("points/a.point", "points/new.point");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"dir", "s3"})
    void anUploadIsInvisibleUntilCompleteAndAnAbortedOneNeverAppears(String kind) throws Exception {
        byte[] big = new byte[(12 << 20) + 12345]; // three 5 MiB parts on S3, the last one short
        new Random(1).nextBytes(big);
        try (ObjectStore o = store(kind)) {
            ObjectStore.Upload u = o.create("packs/big.pack", "w1");
            for (int done = 0; done < big.length; done += 100_000) {
                u.write(ByteBuffer.wrap(big, done, Math.min(100_000, big.length - done)));
            }
            assertThat(u.positionBytes()).isEqualTo(big.length);
            assertThat(o.list("packs/")).as("not visible before complete").isEmpty();
            u.complete();
            assertThat(o.list("packs/")).singleElement().satisfies(e -> assertThat(e.sizeBytes()).isEqualTo(big.length));
            assertThat(o.get("packs/big.pack", big.length)).isEqualTo(big);
            ByteBuffer mid = o.read("packs/big.pack", (5 << 20) - 10, 20);
            assertThat(mid.remaining()).isEqualTo(20);

            ObjectStore.Upload gone = o.create("packs/gone.pack", "w2");
            gone.write(ByteBuffer.wrap(big, 0, 6 << 20));
            gone.abort();
            ObjectStore.Upload torn = o.create("packs/torn.pack", "w3");
            torn.write(ByteBuffer.wrap(big, 0, 1000));
            assertThat(o.list("packs/")).extracting(ObjectStore.Entry::key).containsExactly("packs/big.pack");
            o.dropIncomplete("w3", Instant.now().plusSeconds(60));
            assertThat(o.list("packs/")).extracting(ObjectStore.Entry::key).containsExactly("packs/big.pack");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"dir", "s3"})
    void fullAndIncrementalPointsRoundTripThroughTheStore(String kind) throws Exception {
        RepositoryLocation where = location(kind);
        long size = RepositoryRoundTripTest.SIZE;
        try (FileExportServer nbd = new FileExportServer(dir, size, "disk0")) {
            String uri = nbd.uri("disk0");
            byte[] v1 = RepositoryRoundTripTest.initialContent(1);
            RepositoryRoundTripTest.write(uri, 0, v1);
            byte[] v2 = v1.clone();
            byte[] map = new byte[RepositoryRoundTripTest.BLOCKS];
            Point full;
            Point inc;
            try (Repository repo = Repository.openForWriting(where, "h1", 3 << 20, m -> { })) {
                full = repo.backup(RepositoryRoundTripTest.source(uri, "g", 1), null, Repository.Progress.NONE);
                byte[] chunk = new byte[RepositoryRoundTripTest.BLOCK];
                new Random(2).nextBytes(chunk);
                System.arraycopy(chunk, 0, v2, 40 * RepositoryRoundTripTest.BLOCK, chunk.length);
                RepositoryRoundTripTest.write(uri, 40L * RepositoryRoundTripTest.BLOCK, chunk);
                map[40] = 2;
                inc = repo.backup(RepositoryRoundTripTest.source(uri, "g", 2), () -> map, Repository.Progress.NONE);
            }
            assertThat(full.host()).isEqualTo("h1");
            assertThat(inc.kind()).isEqualTo("incremental");
            try (Repository repo = Repository.openForReading(where)) {
                assertThat(repo.points()).extracting(Point::id).containsExactly(full.id(), inc.id());
                Path f1 = dir.resolve("1.img");
                Path f2 = dir.resolve("2.img");
                repo.restore(full.id(), f1.toString(), Repository.Progress.NONE);
                repo.restore(inc.id(), f2.toString(), Repository.Progress.NONE);
                assertThat(java.nio.file.Files.readAllBytes(f1)).isEqualTo(v1);
                assertThat(java.nio.file.Files.readAllBytes(f2)).isEqualTo(v2);
                assertThat(repo.verify(null).ok()).isTrue();
            }
            // a second host's full backup of the same content stores nothing new but its index
            try (Repository repo = Repository.openForWriting(where, "h2", 3 << 20, m -> { })) {
                Point other = repo.backup(RepositoryRoundTripTest.source(uri, "g9", 1), null, Repository.Progress.NONE);
                assertThat(other.kind()).as("another host's point is no base").isEqualTo("full");
                assertThat(other.reason()).contains("no earlier point");
                assertThat(other.newBytes()).as("every chunk and node exists").isZero();
            }
            // a writer that dedupes only against its own host's index objects stores the content again
            try (Repository repo = Repository.openForWriting(where, "h3", 3 << 20, m -> { })) {
                repo.dedupScope(Repository.DedupScope.HOST);
                Point own = repo.backup(RepositoryRoundTripTest.source(uri, "g8", 1), null, Repository.Progress.NONE);
                assertThat(own.newBytes()).as("the random half at least").isGreaterThan(size / 2);
            }
            try (ObjectStore o = Repository.storeFor(where)) {
                assertThat(o.list("index/")).extracting(ObjectStore.Entry::key)
                        .allMatch(k -> k.startsWith("index/h1+") || k.startsWith("index/h2+") || k.startsWith("index/h3+"));
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"dir", "s3"})
    void aVersion1RepositoryIsReadAndUpgradedByItsFirstWriter(String kind) throws Exception {
        RepositoryLocation where = location(kind);
        long size = RepositoryRoundTripTest.SIZE;
        try (FileExportServer nbd = new FileExportServer(dir, size, "disk0")) {
            String uri = nbd.uri("disk0");
            byte[] v1 = RepositoryRoundTripTest.initialContent(3);
            RepositoryRoundTripTest.write(uri, 0, v1);
            Point p;
            try (Repository repo = Repository.openForWriting(where, "h1", 3 << 20, m -> { })) {
                p = repo.backup(RepositoryRoundTripTest.source(uri, "g", 1), null, Repository.Progress.NONE);
            }
            // make it look as version 1 wrote it: config version 1, a format 1 manifest, no index objects
            try (ObjectStore o = Repository.storeFor(where)) {
                String config = new String(o.get("config", 4096), StandardCharsets.UTF_8).replace("version 2", "version 1");
                o.put("config", config.getBytes(StandardCharsets.UTF_8));
                Point old = new Point(p.id(), p.device(), p.time(), p.kind(), p.reason(), p.generation(), p.snapNumber(),
                        p.sizeBytes(), p.chunkSizeBytes(), p.fanout(), p.root(), p.bytesRead(), p.newBytes(), p.seconds(), "");
                String body = new String(ManifestDescriptor.encode(old), StandardCharsets.UTF_8).lines().findFirst()
                        .orElseThrow().replace("\"format\":2", "\"format\":1").replace(",\"host\":\"\"", "");
                o.put("points/" + p.id() + ".point", (body + "\nsha256 " + Sha256.of(body.getBytes(StandardCharsets.UTF_8)).hex()
                        + "\n").getBytes(StandardCharsets.UTF_8));
                for (ObjectStore.Entry e : o.list("index/")) {
                    o.delete(e.key());
                }
            }
            try (Repository repo = Repository.openForReading(where)) {
                assertThat(repo.points()).singleElement().satisfies(x -> assertThat(x.host()).isEmpty());
            }
            List<String> warnings = new java.util.ArrayList<>();
            try (Repository repo = Repository.openForWriting(where, "h1", 3 << 20, warnings::add)) {
                Point next = repo.backup(RepositoryRoundTripTest.source(uri, "g", 2), () -> new byte[RepositoryRoundTripTest.BLOCKS],
                        Repository.Progress.NONE);
                assertThat(next.kind()).as("a version 1 point of no host is this host's base").isEqualTo("incremental");
                Point again = repo.backup(RepositoryRoundTripTest.source(uri, "g2", 1), null, Repository.Progress.NONE);
                assertThat(again.newBytes()).as("the upgrade's index object lists every pack").isZero();
            }
            assertThat(warnings).anyMatch(w -> w.contains("upgraded repository"));
            try (ObjectStore o = Repository.storeFor(where)) {
                assertThat(new String(o.get("config", 4096), StandardCharsets.UTF_8)).contains("version 2");
            }
        }
    }

    @org.junit.jupiter.api.Test
    void s3LocationsParseAndBadOnesAreNamed() {
        RepositoryLocation.S3 s = (RepositoryLocation.S3) RepositoryLocation.parse("s3://my-bucket/a/b/", "http://h:9000");
        assertThat(s.bucket()).isEqualTo("my-bucket");
        assertThat(s.prefix()).isEqualTo("a/b");
        assertThat(s.endpoint()).isEqualTo(URI.create("http://h:9000"));
        assertThat(s).hasToString("s3://my-bucket/a/b");
        assertThat(((RepositoryLocation.S3) RepositoryLocation.parse("s3://bkt", "http://h")).prefix()).isEmpty();
        assertThatThrownBy(() -> RepositoryLocation.parse("s3://B_ad/x", null)).hasMessageContaining("bucket name 'B_ad'");
        assertThatThrownBy(() -> RepositoryLocation.parse("s3://bkt/x", "ftp://h")).hasMessageContaining("http:// or https://");
        assertThatThrownBy(() -> RepositoryLocation.parse("/some/dir", "http://h")).hasMessageContaining("is not an s3:// location");
        assertThat(RepositoryLocation.parse("rel", null)).isInstanceOf(RepositoryLocation.Directory.class);
    }
}
