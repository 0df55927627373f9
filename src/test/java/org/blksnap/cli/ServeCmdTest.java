package org.blksnap.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code blksnap serve} refuses what it cannot serve at once, with the repository's and the tool's exit codes. */
class ServeCmdTest {
    @TempDir
    Path dir;

    @Test
    void aMissingRepositoryIsNotFound() {
        CliRun r = CliRun.run(null, "serve", "--repo", dir.resolve("none").toString(), "--socket",
                dir.resolve("s.sock").toString());
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(66);
        assertThat(r.err()).contains("blksnap: serve: NOT_FOUND: no repository at " + dir.resolve("none"));
        assertThat(dir.resolve("s.sock")).doesNotExist();
    }

    @Test
    void aMalformedListenAddressIsAUsageError() {
        CliRun r = CliRun.run(null, "serve", "--repo", dir.toString(), "--listen", "localhost");
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(64);
        assertThat(r.err()).contains("--listen (localhost) must be HOST:PORT");
        r = CliRun.run(null, "serve", "--repo", dir.toString(), "--listen", "127.0.0.1:99999");
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(64);
        assertThat(r.err()).contains("the port must be within 0..65535");
    }

    @Test
    void aSocketInAMissingDirectoryIsALocalIoError() throws Exception {
        Path repo = Files.createDirectories(dir.resolve("repo"));
        Files.writeString(repo.resolve("config"), "blksnap-backup-repository\nversion 1\nid x\n");
        Files.createDirectories(repo.resolve("points"));
        Files.createDirectories(repo.resolve("packs"));
        CliRun r = CliRun.run(null, "serve", "--repo", repo.toString(), "--socket", dir.resolve("no/such/dir/s.sock").toString());
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(74);
        assertThat(r.err()).contains("no/such/dir/s.sock");
    }
}
