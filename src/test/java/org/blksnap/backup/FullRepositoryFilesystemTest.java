package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Random;
import org.blksnap.nbd.FileExportServer;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A repository on a filesystem that fills up in the middle of a backup: a clear NO_SPACE naming
 * the file, no point, and once room is made the next backup and verify succeed.
 */
@Tag("system")
class FullRepositoryFilesystemTest {
    @TempDir
    Path dir;

    @Test
    void aFullFilesystemIsNoSpaceWithNoPointAndTheNextBackupSucceeds() throws Exception {
        ExternalTool.require("root", "mount", "umount");
        Path small = Files.createDirectory(dir.resolve("tmpfs"));
        ExternalTool.run(Duration.ofSeconds(30), "mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small.toString())
                .assertSuccess();
        try (FileExportServer nbd = new FileExportServer(dir, RepositoryRoundTripTest.SIZE, "disk0")) {
            String uri = nbd.uri("disk0");
            byte[] random = new byte[(int) RepositoryRoundTripTest.SIZE];
            new Random(3).nextBytes(random);
            RepositoryRoundTripTest.write(uri, 0, random);
            Path repoDir = small.resolve("repo");
            try (Repository repo = Repository.openForWriting(repoDir, 1 << 20, m -> { })) {
                assertThatThrownBy(() -> repo.backup(RepositoryRoundTripTest.source(uri, "g", 1), null,
                        Repository.Progress.NONE)).isInstanceOfSatisfying(RepositoryException.class, e -> {
                            assertThat(e.code()).as("%s", e).isEqualTo(RepositoryException.Code.NO_SPACE);
                            assertThat(e.getMessage()).contains(repoDir.toString()).contains("No space left on device");
                        });
                assertThat(repo.points()).isEmpty();
            }
            assertThat(repoDir.resolve("points")).isEmptyDirectory();
            // make room: the device becomes mostly zeros, which are holes
            RepositoryRoundTripTest.write(uri, 0, new byte[(int) RepositoryRoundTripTest.SIZE - (1 << 20)]);
            assertThat(repoDir.resolve("tmp")).isEmptyDirectory();
            try (Repository maintenance = Repository.openForMaintenance(new RepositoryLocation.Directory(repoDir), m -> { })) {
                // the sealed packs of the failed backup: no point uses them, and no backup runs
                assertThat(maintenance.gc(Duration.ZERO, false).packsRemoved()).isNotEmpty();
            }
            try (Repository repo = Repository.openForWriting(repoDir, 1 << 20, m -> { })) {
                Point p = repo.backup(RepositoryRoundTripTest.source(uri, "g", 2), null, Repository.Progress.NONE);
                assertThat(repo.verify(null).ok()).isTrue();
                Path out = dir.resolve("out.img");
                repo.restore(p.id(), out.toString(), Repository.Progress.NONE);
                byte[] expected = random.clone();
                java.util.Arrays.fill(expected, 0, expected.length - (1 << 20), (byte) 0);
                assertThat(Files.readAllBytes(out)).isEqualTo(expected);
            }
        } finally {
            ExternalTool.run(Duration.ofSeconds(30), "umount", small.toString());
        }
    }
}
