package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.RepeatedTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Backups that start at once on a repository that does not exist yet (two tools, or two jobs of the
 * daemon's agent): one creates it, the others find its config, none calls it a foreign directory.
 */
class RepositoryCreationRaceTest {
    @TempDir
    Path dir;

    @RepeatedTest(5)
    void writersStartingTogetherOnANewDirectoryAllOpenTheSameRepository() throws Exception {
        Path repo = dir.resolve("repo");
        int writers = 6;
        CountDownLatch go = new CountDownLatch(1);
        List<Future<String>> opened = new ArrayList<>();
        try (ExecutorService pool = Executors.newFixedThreadPool(writers)) {
            for (int i = 0; i < writers; i++) {
                opened.add(pool.submit(() -> {
                    go.await();
                    try (Repository r = Repository.openForWriting(repo, 1 << 20, w -> { })) {
                        return r.location();
                    }
                }));
            }
            go.countDown();
            for (Future<String> f : opened) {
                assertThat(f.get()).isEqualTo(repo.toString());
            }
        }
        assertThat(Files.readString(repo.resolve(RepositoryLayout.CONFIG))).startsWith(RepositoryLayout.CONFIG_MAGIC);
    }

    @Test
    void aDirectoryOfOtherFilesIsStillRefusedAfterTheWait() throws Exception {
        Path other = Files.createDirectories(dir.resolve("other"));
        Files.writeString(other.resolve("notes.txt"), "mine");
        long t0 = System.nanoTime();
        RepositoryException e = org.junit.jupiter.api.Assertions.assertThrows(RepositoryException.class,
                () -> Repository.openForWriting(other, 1 << 20, w -> { }).close());
        assertThat(e.code()).isEqualTo(RepositoryException.Code.NOT_FOUND);
        assertThat(e.getMessage()).contains("not creating one over other files");
        assertThat((System.nanoTime() - t0) / 1e9).as("waited for a creator that never came").isGreaterThan(1.5);
        assertThat(other.resolve("notes.txt")).hasContent("mine");
    }
}
