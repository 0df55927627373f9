package org.blksnap.serve;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.blksnap.backup.Point;
import org.blksnap.backup.Repository;
import org.blksnap.nbd.FileExportServer;

/**
 * Repositories for the serve tests, written by the real backup path: the content is put in a file,
 * served by the project's NBD server and backed up as a full point (no daemon, no CBT).
 */
final class TestRepo {
    private TestRepo() {
    }

    /** Half random, a quarter text (compresses), a quarter zeros (a hole): as a disk is. */
    static byte[] content(int sizeBytes, long seed) {
        byte[] data = new byte[sizeBytes];
        new Random(seed).nextBytes(data);
        byte[] line = "the quick brown fox jumps over the lazy dog 0123456789\n".getBytes(StandardCharsets.US_ASCII);
        for (int i = sizeBytes / 2; i < sizeBytes * 3 / 4; i++) {
            data[i] = line[i % line.length];
        }
        java.util.Arrays.fill(data, sizeBytes * 3 / 4, sizeBytes, (byte) 0);
        return data;
    }

    /** Backs {@code content} up as a full point of {@code device} into {@code repoDir} (created when missing). */
    static Point backup(Path repoDir, Path work, String device, byte[] content, int chunkBytes) throws Exception {
        Path dir = Files.createTempDirectory(work, "src-");
        Files.write(dir.resolve(device + ".img"), content);
        try (FileExportServer nbd = new FileExportServer(dir, content.length, device);
             Repository repo = Repository.openForWriting(repoDir, 1 << 20, m -> { })) {
            return repo.backup(new Repository.BackupSource(device, nbd.uri(device), content.length, chunkBytes,
                    "gen-" + device, 1), null, Repository.Progress.NONE);
        }
    }

    /** SHA-256 of every file under {@code dir}, by relative path. */
    static Map<String, String> checksums(Path dir) {
        Map<String, String> sums = new TreeMap<>();
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path f : files.filter(Files::isRegularFile).toList()) {
                sums.put(dir.relativize(f).toString(), HexFormat.of().formatHex(
                        MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f))));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        return sums;
    }

    /**
     * Flips one byte inside the stored copy of {@code chunk} (found by its content: random chunks are
     * stored uncompressed) in whichever pack holds it; returns the pack.
     */
    static Path damage(Path repoDir, byte[] chunk) throws IOException {
        byte[] probe = java.util.Arrays.copyOfRange(chunk, 1000, 1064);
        List<Path> packs;
        try (Stream<Path> s = Files.list(repoDir.resolve("packs"))) {
            packs = s.toList();
        }
        for (Path p : packs) {
            byte[] bytes = Files.readAllBytes(p);
            int at = indexOf(bytes, probe);
            if (at >= 0) {
                bytes[at + 10] ^= 0x40;
                Files.write(p, bytes);
                return p;
            }
        }
        throw new AssertionError("no pack holds the chunk");
    }

    private static int indexOf(byte[] hay, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= hay.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (hay[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }
}
