package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import org.blksnap.testing.ExternalTool;

/**
 * Files of random content with their MD5 sums, as upstream's {@code generate_files} and
 * {@code check_files} make and check them. Each call is independent; thread-safe as long as each
 * thread uses its own {@link Random}.
 */
final class FileSet {
    private FileSet() {
    }

    /** Writes {@code n} files {@code prefix0..} of 4 KiB to 54 KiB each, then syncs. Returns name to MD5. */
    static Map<String, String> write(Path dir, String prefix, int n, Random random) throws Exception {
        return write(dir, prefix, n, random, 8 * 512, 108 * 512);
    }

    /** Writes {@code n} files of {@code minBytes} to {@code maxBytes} (exclusive), then syncs. */
    static Map<String, String> write(Path dir, String prefix, int n, Random random, int minBytes, int maxBytes)
            throws Exception {
        Map<String, String> sums = new LinkedHashMap<>();
        for (int i = 0; i < n; i++) {
            byte[] data = new byte[minBytes + random.nextInt(maxBytes - minBytes) / 512 * 512];
            random.nextBytes(data);
            Path f = dir.resolve(prefix + i);
            Files.write(f, data);
            sums.put(f.getFileName().toString(), md5(data));
        }
        ExternalTool.run(Duration.ofSeconds(60), "sync").assertSuccess();
        return sums;
    }

    /** Asserts that each file exists in {@code dir} with its MD5. */
    static void check(Path dir, Map<String, String> sums) throws Exception {
        for (var e : sums.entrySet()) {
            assertThat(md5(Files.readAllBytes(dir.resolve(e.getKey())))).as("md5 of %s in %s", e.getKey(), dir)
                    .isEqualTo(e.getValue());
        }
    }

    /** Asserts that none of the files exists in {@code dir}. */
    static void checkAbsent(Path dir, Map<String, String> sums, String why) {
        for (String f : sums.keySet()) {
            assertThat(dir.resolve(f)).as("%s: %s", why, f).doesNotExist();
        }
    }

    private static String md5(byte[] data) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(data));
    }
}
