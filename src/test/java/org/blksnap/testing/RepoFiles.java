package org.blksnap.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

/**
 * A backup repository's files as a test sees them from outside, with no knowledge of the format:
 * checksums of every file (to show nothing changed), and damage to the stored copy of some content
 * (found by the content itself, so it works for blobs stored uncompressed, e.g. random data).
 */
public final class RepoFiles {
    private RepoFiles() {
    }

    /** SHA-256 of every file under {@code dir}, by relative path. */
    public static Map<String, String> checksums(Path dir) {
        Map<String, String> sums = new TreeMap<>();
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path f : files.filter(Files::isRegularFile).toList()) {
                sums.put(dir.relativize(f).toString(), HexFormat.of().formatHex(
                        MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f))));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        return sums;
    }

    /**
     * Flips one byte inside the first place of a pack under {@code repoDir/packs} that holds
     * {@code probe} (a few dozen bytes of the content to damage).
     *
     * @return the pack damaged, or null when no pack holds the probe
     */
    public static Path flipByteOfStoredCopy(Path repoDir, byte[] probe) throws IOException {
        List<Path> packs;
        try (Stream<Path> s = Files.list(repoDir.resolve("packs"))) {
            packs = s.sorted().toList();
        }
        for (Path p : packs) {
            byte[] bytes = Files.readAllBytes(p);
            int at = indexOf(bytes, probe);
            if (at >= 0) {
                bytes[at + probe.length / 2] ^= 0x40;
                Files.write(p, bytes);
                return p;
            }
        }
        return null;
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
