package org.blksnap.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code blksnap repo init [--encrypt --key-file FILE]} and {@code --key-file} /
 * {@code $BLKSNAP_KEY_FILE} on the repository commands: the KEY error (exit 77) names the
 * repository and the key file; the key never appears in the output.
 */
class RepoKeyCmdTest {
    @TempDir
    Path dir;

    @Test
    void anEncryptedRepositoryIsMadeWithItsKeyFileAndReadOnlyWithIt() throws Exception {
        Path repo = dir.resolve("repo");
        Path key = dir.resolve("repo.key");
        CliRun r = CliRun.run(null, "repo", "init", "--repo", repo.toString(), "--encrypt", "--key-file", key.toString());
        assertThat(r.exitCode()).as(r.toString()).isZero();
        assertThat(r.out()).contains("created encrypted repository " + repo, "its key is in " + key);
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(key))).isEqualTo("rw-------");
        String secret = Files.readString(key).lines().filter(l -> l.startsWith("key ")).findFirst().orElseThrow().substring(4);
        assertThat(r.out() + r.err()).doesNotContain(secret);

        r = CliRun.run(null, "points", "--repo", repo.toString());
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(77);
        assertThat(r.err()).contains("blksnap: points: KEY: repository " + repo + " is encrypted", "--key-file",
                "BLKSNAP_KEY_FILE");
        for (String cmd : new String[] {"points", "verify", "gc"}) {
            r = CliRun.run(null, cmd, "--repo", repo.toString(), "--key-file", key.toString());
            assertThat(r.exitCode()).as(r.toString()).isZero();
            r = CliRun.run(Map.of("BLKSNAP_KEY_FILE", key.toString()), null, cmd, "--repo", repo.toString());
            assertThat(r.exitCode()).as("$BLKSNAP_KEY_FILE: %s", r).isZero();
            assertThat(r.out() + r.err()).doesNotContain(secret);
        }

        Path other = dir.resolve("other.key");
        r = CliRun.run(null, "repo", "init", "--repo", dir.resolve("second").toString(), "--encrypt", "--key-file", other.toString());
        assertThat(r.exitCode()).as(r.toString()).isZero();
        r = CliRun.run(null, "verify", "--repo", repo.toString(), "--key-file", other.toString());
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(77);
        assertThat(r.err()).contains("blksnap: verify: KEY: key file " + other + " does not hold the key of repository " + repo);

        // a key file is never overwritten, and then no repository is made
        String before = Files.readString(key);
        r = CliRun.run(null, "repo", "init", "--repo", dir.resolve("third").toString(), "--encrypt", "--key-file", key.toString());
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(77);
        assertThat(r.err()).contains("key file " + key + " exists");
        assertThat(Files.readString(key)).isEqualTo(before);
        assertThat(dir.resolve("third")).doesNotExist();

        r = CliRun.run(null, "repo", "init", "--repo", dir.resolve("fourth").toString(), "--encrypt");
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(64);
        assertThat(r.err()).contains("--encrypt needs --key-file");
        r = CliRun.run(null, "serve", "--repo", repo.toString(), "--socket", dir.resolve("s.sock").toString());
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(77);
        assertThat(r.err()).contains("blksnap: serve: KEY: repository " + repo + " is encrypted");
        assertThat(dir.resolve("s.sock")).doesNotExist();
    }

    @Test
    void anUnencryptedRepositoryRefusesAKeyFile() throws Exception {
        Path repo = dir.resolve("plain");
        CliRun r = CliRun.run(null, "repo", "init", "--repo", repo.toString());
        assertThat(r.exitCode()).as(r.toString()).isZero();
        assertThat(r.out()).contains("created repository " + repo);
        Path key = dir.resolve("k");
        r = CliRun.run(null, "repo", "init", "--repo", dir.resolve("x").toString(), "--encrypt", "--key-file", key.toString());
        assertThat(r.exitCode()).as(r.toString()).isZero();
        r = CliRun.run(Map.of("BLKSNAP_KEY_FILE", key.toString()), null, "points", "--repo", repo.toString());
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(77);
        assertThat(r.err()).contains("KEY: repository " + repo + " is not encrypted, and a key file is given (" + key + ")");
        r = CliRun.run(null, "points", "--repo", repo.toString(), "--key-file", dir.resolve("missing").toString());
        assertThat(r.exitCode()).as(r.toString()).isEqualTo(77);
        assertThat(r.err()).contains("key file " + dir.resolve("missing") + " does not exist");
        r = CliRun.run(null, "repo", "init", "--repo", repo.toString());
        assertThat(r.exitCode()).as("not over an existing repository: %s", r).isEqualTo(74);
        assertThat(r.err()).contains("a repository exists at " + repo);
    }
}
