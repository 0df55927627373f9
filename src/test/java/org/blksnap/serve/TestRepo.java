package org.blksnap.serve;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.blksnap.backup.Point;
import org.blksnap.backup.Repository;
import org.blksnap.nbd.FileExportServer;
import org.blksnap.testing.RepoFiles;

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

    /** One of the tasks of {@link #inParallel}. */
    @FunctionalInterface
    interface Task {
        void run(int index) throws Exception;
    }

    /** Runs {@code task(0..n-1)} on {@code n} virtual threads at once and waits; rethrows the first failure. */
    static void inParallel(int n, Task task) throws Exception {
        try (java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newVirtualThreadPerTaskExecutor()) {
            java.util.List<java.util.concurrent.Future<?>> tasks = new java.util.ArrayList<>();
            for (int i = 0; i < n; i++) {
                int index = i;
                tasks.add(pool.submit(() -> {
                    task.run(index);
                    return null;
                }));
            }
            for (java.util.concurrent.Future<?> f : tasks) {
                try {
                    f.get();
                } catch (java.util.concurrent.ExecutionException e) {
                    if (e.getCause() instanceof Exception x) {
                        throw x;
                    }
                    throw e;
                }
            }
        }
    }

    /**
     * Flips one byte inside the stored copy of {@code chunk} (found by its content: random chunks are
     * stored uncompressed) in whichever pack holds it; returns the pack.
     */
    static Path damage(Path repoDir, byte[] chunk) throws IOException {
        Path pack = RepoFiles.flipByteOfStoredCopy(repoDir, java.util.Arrays.copyOfRange(chunk, 1000, 1064));
        if (pack == null) {
            throw new AssertionError("no pack holds the chunk");
        }
        return pack;
    }
}
