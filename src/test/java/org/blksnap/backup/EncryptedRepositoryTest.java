package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.UUID;
import org.blksnap.nbd.FileExportServer;
import org.blksnap.testing.S3ServerExtension;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Client-side encryption (format version 3) on a directory and on S3 (s3proxy): full and
 * incremental points restore bit for bit and dedupe as before; no object holds a known chunk's
 * SHA-256 or its recognizable text (while an unencrypted repository, the control, does); a missing
 * or wrong key, a key for an unencrypted repository and an unencrypted writer on an encrypted one
 * are KEY errors that write nothing; a byte flipped in a pack fails authentication, and verify
 * names the points.
 */
class EncryptedRepositoryTest {
    static final int BLOCK = RepositoryRoundTripTest.BLOCK;
    static final long SIZE = RepositoryRoundTripTest.SIZE;
    static final int BLOCKS = RepositoryRoundTripTest.BLOCKS;
    static final byte[] TEXT = "the quick brown fox jumps over the lazy dog".getBytes(StandardCharsets.US_ASCII);

    @RegisterExtension
    static final S3ServerExtension s3 = new S3ServerExtension();

    @TempDir
    Path dir;

    private RepositoryLocation location(String kind) {
        return switch (kind) {
            case "dir" -> new RepositoryLocation.Directory(dir.resolve("repo"));
            case "s3" -> RepositoryLocation.parse(s3.newRepo("enc"), s3.endpoint().toString());
            default -> throw new IllegalArgumentException(kind);
        };
    }

    /** Every object of the store: its key and bytes. */
    private static Map<String, byte[]> objects(RepositoryLocation where) throws Exception {
        Map<String, byte[]> all = new HashMap<>();
        try (ObjectStore store = Repository.storeFor(where)) {
            for (String folder : List.of("", "packs/", "points/", "index/", "sessions/", "gc/", "tmp/")) {
                for (ObjectStore.Entry e : store.list(folder)) {
                    all.put(e.key(), store.get(e.key(), Integer.MAX_VALUE - 16));
                }
            }
        }
        return all;
    }

    private static boolean contains(byte[] hay, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= hay.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (hay[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return true;
        }
        return false;
    }

    /** The objects (key or bytes) that hold any of {@code needles}. */
    private static List<String> holding(Map<String, byte[]> objects, List<byte[]> needles) {
        List<String> found = new ArrayList<>();
        for (Map.Entry<String, byte[]> o : objects.entrySet()) {
            for (byte[] n : needles) {
                if (contains(o.getValue(), n) || contains(o.getKey().getBytes(StandardCharsets.US_ASCII), n)) {
                    found.add(o.getKey());
                }
            }
        }
        return found;
    }

    /** Half random, a quarter of text chunks, a quarter zeros ({@link RepositoryRoundTripTest#initialContent}). */
    private static byte[] content() {
        return RepositoryRoundTripTest.initialContent(7);
    }

    /** What no encrypted object may hold: the SHA-256 (bytes and hex) of a random and of a text chunk, and the text. */
    private static List<byte[]> secrets(byte[] content) {
        List<byte[]> out = new ArrayList<>();
        for (int chunk : new int[] {0, BLOCKS / 2 + 1}) {
            Sha256 h = Sha256.of(Arrays.copyOfRange(content, chunk * BLOCK, (chunk + 1) * BLOCK));
            out.add(h.bytes());
            out.add(h.hex().getBytes(StandardCharsets.US_ASCII));
        }
        out.add(TEXT);
        return out;
    }

    private Path keyFile() {
        return dir.resolve("repo.key");
    }

    @ParameterizedTest
    @ValueSource(strings = {"dir", "s3"})
    void encryptedPointsRestoreBitForBitDedupeAndLeakNoHashOrText(String kind) throws Exception {
        RepositoryLocation where = location(kind);
        String id = Repository.init(where, keyFile());
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(keyFile()))).isEqualTo("rw-------");
        String keyText = Files.readString(keyFile());
        String config = new String(objects(where).get("config"), StandardCharsets.UTF_8);
        assertThat(config).contains("version 3\nid " + id + "\nencryption aes-256-gcm\nkey-check ");
        assertThat(config).as("the key itself is not in the config").doesNotContain(keyText.substring(keyText.indexOf("key ") + 4).trim());

        RepositoryKey key = RepositoryKey.load(keyFile());
        String gen = UUID.randomUUID().toString();
        byte[] v1 = content();
        byte[] v2 = v1.clone();
        Point full;
        Point inc;
        Point again;
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0")) {
            String uri = nbd.uri("disk0");
            RepositoryRoundTripTest.write(uri, 0, v1);
            byte[] map = new byte[BLOCKS];
            Arrays.fill(map, (byte) 1);
            try (Repository repo = Repository.openForWriting(where, key, "h1", 1 << 20, m -> { })) {
                assertThat(repo.encrypted()).isTrue();
                full = repo.backup(RepositoryRoundTripTest.source(uri, gen, 1), null, Repository.Progress.NONE);
                Random r = new Random(3);
                for (int b : new int[] {2, 70, 71, 120}) {
                    byte[] chunk = new byte[BLOCK];
                    r.nextBytes(chunk);
                    System.arraycopy(chunk, 0, v2, b * BLOCK, BLOCK);
                    RepositoryRoundTripTest.write(uri, (long) b * BLOCK, chunk);
                    map[b] = 2;
                }
                inc = repo.backup(RepositoryRoundTripTest.source(uri, gen, 2), () -> map, Repository.Progress.NONE);
                // a full point of the same content (a new generation): every chunk and node is known by its keyed name
                again = repo.backup(RepositoryRoundTripTest.source(uri, "g-new", 3), null, Repository.Progress.NONE);
            }
        }
        assertThat(full.kind()).isEqualTo("full");
        assertThat(inc.kind()).isEqualTo("incremental");
        assertThat(inc.bytesRead()).isEqualTo(4L * BLOCK);
        assertThat(inc.newBytes()).as("4 random chunks, sealed, and the nodes above them")
                .isBetween(4L * BLOCK, 4L * BLOCK + 4 * 3000L + 64 * 1024);
        assertThat(again.kind()).isEqualTo("full");
        assertThat(again.newBytes()).as("deduplicated: same content, same key, same names").isZero();

        try (Repository repo = Repository.openForReading(where, key)) {
            assertThat(repo.points()).extracting(Point::id).containsExactly(full.id(), inc.id(), again.id());
            Map<String, byte[]> expected = Map.of(full.id(), v1, inc.id(), v2, again.id(), v2);
            for (Map.Entry<String, byte[]> e : expected.entrySet()) {
                Path out = dir.resolve(e.getKey() + ".img");
                repo.restore(e.getKey(), out.toString(), Repository.Progress.NONE);
                assertThat(Files.readAllBytes(out)).as("point %s", e.getKey()).isEqualTo(e.getValue());
            }
            Repository.VerifyReport report = repo.verify(null);
            assertThat(report.problems()).isEmpty();
            assertThat(report.points()).isEqualTo(3);
        }
        Map<String, byte[]> stored = objects(where);
        assertThat(stored.keySet()).anyMatch(k -> k.startsWith("packs/")).anyMatch(k -> k.startsWith("points/"));
        assertThat(holding(stored, secrets(v1))).as("objects holding a chunk's SHA-256 or its text").isEmpty();
        assertThat(holding(stored, List.of(keyText.substring(keyText.indexOf("key ") + 4).trim().getBytes(StandardCharsets.US_ASCII))))
                .as("objects holding the key").isEmpty();

        // prune and gc work with the key, on an encrypted repository
        try (Repository repo = Repository.openForMaintenance(where, key, m -> { })) {
            repo.prune(new Retention(1, 0, 0, 0), false);
            Repository.GcResult gc = repo.gc(Duration.ZERO, false);
            assertThat(gc.points()).isEqualTo(1);
        }
        try (Repository repo = Repository.openForReading(where, key)) {
            Path out = dir.resolve("after-gc.img");
            repo.restore(again.id(), out.toString(), Repository.Progress.NONE);
            assertThat(Files.readAllBytes(out)).isEqualTo(v2);
            assertThat(repo.verify(null).ok()).isTrue();
        }
    }

    @Test
    void theSameScanFindsHashesAndTextInAnUnencryptedRepository() throws Exception {
        RepositoryLocation where = location("dir");
        byte[] v1 = content();
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0");
             Repository repo = Repository.openForWriting(where, null, "h1", 1 << 20, m -> { })) {
            String uri = nbd.uri("disk0");
            RepositoryRoundTripTest.write(uri, 0, v1);
            repo.backup(RepositoryRoundTripTest.source(uri, "g", 1), null, Repository.Progress.NONE);
        }
        List<byte[]> secrets = secrets(v1);
        Map<String, byte[]> stored = objects(where);
        assertThat(holding(stored, List.of(secrets.get(0)))).as("the random chunk's SHA-256 is its name in a pack").isNotEmpty();
        assertThat(holding(stored, List.of(TEXT))).as("zstd keeps the text's first line literal").isNotEmpty();
    }

    private static void assertKeyError(RepositoryException e, String... mentions) {
        assertThat(e.code()).isEqualTo(RepositoryException.Code.KEY);
        assertThat(e.getMessage()).contains(mentions);
        assertThat(e.code().exitStatus()).isEqualTo(77);
    }

    @Test
    void aMissingOrWrongKeyAndMixingAreKeyErrorsThatWriteNothing() throws Exception {
        RepositoryLocation where = location("dir");
        Repository.init(where, keyFile());
        Path other = dir.resolve("other.key");
        RepositoryKey wrong = RepositoryKey.create(other);
        Map<String, byte[]> before = objects(where);
        String repoName = where.toString();

        assertThatThrownBy(() -> Repository.openForReading(where, null)).isInstanceOfSatisfying(RepositoryException.class,
                e -> assertKeyError(e, "repository " + repoName + " is encrypted", "--key-file", RepositoryKey.KEY_FILE_ENV));
        assertThatThrownBy(() -> Repository.openForWriting(where, null, "h1", 1 << 20, m -> { }))
                .as("an unencrypted writer").isInstanceOfSatisfying(RepositoryException.class,
                        e -> assertKeyError(e, "repository " + repoName + " is encrypted"));
        assertThatThrownBy(() -> Repository.openForMaintenance(where, null, m -> { }))
                .isInstanceOfSatisfying(RepositoryException.class, e -> assertKeyError(e, "is encrypted"));
        for (var open : List.<ThrowingOpen>of(() -> Repository.openForReading(where, wrong),
                () -> Repository.openForWriting(where, wrong, "h1", 1 << 20, m -> { }),
                () -> Repository.openForMaintenance(where, wrong, m -> { }))) {
            assertThatThrownBy(open::open).isInstanceOfSatisfying(RepositoryException.class,
                    e -> assertKeyError(e, "key file " + other, "repository " + repoName));
        }
        assertThat(objects(where)).as("nothing written").containsOnlyKeys(before.keySet());

        // an unencrypted repository refuses a key
        RepositoryLocation plain = new RepositoryLocation.Directory(dir.resolve("plain"));
        Repository.init(plain, null);
        Map<String, byte[]> plainBefore = objects(plain);
        assertThatThrownBy(() -> Repository.openForWriting(plain, wrong, "h1", 1 << 20, m -> { }))
                .isInstanceOfSatisfying(RepositoryException.class, e -> assertKeyError(e, "is not encrypted", other.toString()));
        assertThatThrownBy(() -> Repository.openForReading(plain, wrong))
                .isInstanceOfSatisfying(RepositoryException.class, e -> assertKeyError(e, "is not encrypted"));
        assertThat(objects(plain)).containsOnlyKeys(plainBefore.keySet());

        // a key and no repository: not created (repo init --encrypt makes encrypted ones)
        RepositoryLocation none = new RepositoryLocation.Directory(dir.resolve("none"));
        assertThatThrownBy(() -> Repository.openForWriting(none, wrong, "h1", 1 << 20, m -> { }))
                .isInstanceOfSatisfying(RepositoryException.class, e -> {
                    assertThat(e.code()).isEqualTo(RepositoryException.Code.NOT_FOUND);
                    assertThat(e.getMessage()).contains("repo init");
                });
        assertThat(dir.resolve("none")).doesNotExist();

        // key files: never overwritten; a malformed one is named
        String keyBefore = Files.readString(keyFile());
        assertThatThrownBy(() -> Repository.init(new RepositoryLocation.Directory(dir.resolve("r2")), keyFile()))
                .isInstanceOfSatisfying(RepositoryException.class,
                e -> assertKeyError(e, "key file " + keyFile() + " exists"));
        assertThat(Files.readString(keyFile())).isEqualTo(keyBefore);
        assertThat(dir.resolve("r2")).as("no repository without its key").doesNotExist();
        Files.writeString(dir.resolve("bad.key"), "not a key\n");
        assertThatThrownBy(() -> RepositoryKey.load(dir.resolve("bad.key"))).isInstanceOfSatisfying(RepositoryException.class,
                e -> assertKeyError(e, "key file " + dir.resolve("bad.key") + " is not a blksnap key file"));
        assertThatThrownBy(() -> RepositoryKey.load(dir.resolve("missing.key"))).isInstanceOfSatisfying(RepositoryException.class,
                e -> assertKeyError(e, "key file " + dir.resolve("missing.key") + " does not exist"));
        assertThatThrownBy(() -> Repository.init(where, dir.resolve("third.key"))).as("over an existing repository")
                .isInstanceOf(RepositoryException.class).hasMessageContaining("a repository exists");
        assertThat(dir.resolve("third.key")).doesNotExist();
        assertThat(wrong.toString()).isEqualTo("key file " + other);
    }

    @FunctionalInterface
    private interface ThrowingOpen {
        Repository open() throws Exception;
    }

    @ParameterizedTest
    @ValueSource(strings = {"dir", "s3"})
    void aByteFlippedInsideASealedChunkFailsAuthenticationAndVerifyNamesThePoints(String kind) throws Exception {
        RepositoryLocation where = location(kind);
        Repository.init(where, keyFile());
        RepositoryKey key = RepositoryKey.load(keyFile());
        byte[] v1 = content();
        Point p1;
        Point p2;
        try (FileExportServer nbd = new FileExportServer(Files.createDirectories(dir.resolve("nbd")), SIZE, "disk0");
             Repository repo = Repository.openForWriting(where, key, "h1", 1 << 20, m -> { })) {
            String uri = nbd.uri("disk0");
            RepositoryRoundTripTest.write(uri, 0, v1);
            p1 = repo.backup(RepositoryRoundTripTest.source(uri, "g", 1), null, Repository.Progress.NONE);
            p2 = repo.backup(RepositoryRoundTripTest.source(uri, "g", 2), () -> new byte[BLOCKS], Repository.Progress.NONE);
        }
        // chunk 0 of both points, wherever the writer's threads put it in its pack
        Ref chunk0 = null;
        try (ObjectStore store = Repository.storeFor(where)) {
            for (ObjectStore.Entry e : store.list("packs/")) {
                Map<Sha256, Ref> refs = new HashMap<>();
                PackScan.readTrailer(store, e.key(), e.sizeBytes(), refs);
                for (Ref r : refs.values()) {
                    if (r.kind() == NodeDescriptor.KIND_CHUNK && r.hash().equals(key.name(Arrays.copyOfRange(v1, 0, BLOCK)))) {
                        chunk0 = r;
                    }
                }
            }
        }
        assertThat(chunk0).as("chunk 0 is in a pack").isNotNull();
        // the pack rewritten with one bit flipped 1000 bytes into the chunk's ciphertext (as the store's operator could)
        String packKey = RepositoryLayout.packKey(chunk0.pack());
        long at = chunk0.offsetBytes() + PackDescriptor.BLOB_HEADER_BYTES + CryptoDescriptor.KEY_ID_BYTES
                + CryptoDescriptor.NONCE_BYTES + 1000;
        try (ObjectStore store = Repository.storeFor(where)) {
            byte[] bytes = store.get(packKey, Integer.MAX_VALUE - 16);
            bytes[(int) at] ^= 0x01;
            store.put(packKey, bytes);
        }
        String shortName = chunk0.hash().shortHex();
        try (Repository repo = Repository.openForReading(where, key)) {
            Repository.VerifyReport report = repo.verify(null);
            assertThat(report.ok()).isFalse();
            assertThat(report.problems()).singleElement().satisfies(p -> {
                assertThat(p.what()).contains("chunk " + shortName);
                assertThat(p.why()).contains("does not authenticate");
                assertThat(p.points()).containsExactlyInAnyOrder(p1.id(), p2.id());
            });
            for (Point p : List.of(p1, p2)) {
                Path out = dir.resolve(p.id() + ".img");
                assertThatThrownBy(() -> repo.restore(p.id(), out.toString(), Repository.Progress.NONE))
                        .isInstanceOfSatisfying(RepositoryException.class, e -> {
                            assertThat(e.code()).isEqualTo(RepositoryException.Code.DAMAGED);
                            assertThat(e.getMessage()).contains("point " + p.id(), "chunk", shortName, "does not authenticate");
                        });
            }
        }
        // a flipped manifest byte: that point does not read, by name
        try (ObjectStore store = Repository.storeFor(where)) {
            byte[] m = store.get(RepositoryLayout.pointKey(p2.id()), ManifestDescriptor.MAX_BYTES);
            m[m.length - 20] ^= 0x01;
            store.put(RepositoryLayout.pointKey(p2.id()), m);
        }
        try (Repository repo = Repository.openForReading(where, key)) {
            assertThatThrownBy(() -> repo.point(p2.id())).isInstanceOfSatisfying(RepositoryException.class, e -> {
                assertThat(e.code()).isEqualTo(RepositoryException.Code.DAMAGED);
                assertThat(e.getMessage()).contains(p2.id(), "does not authenticate");
            });
        }
    }
}
