package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * {@code blksnap status} against a real daemon: devices with their trackers' generation and last
 * snapshot, a live snapshot with its age, a storage bar that shows what the writes after take used,
 * its image; with {@code --repo}, the newest backup point of each device; {@code --json} is the
 * daemon's answer, extended only by {@code --repo}.
 */
class StatusCommandTest {
    @TempDir
    Path dir;

    /** The line without the snapshot's age in seconds, which moves between two calls. */
    private static String ageless(String line) {
        return line.replaceFirst(" taken [0-9]+s ago ", " taken Ns ago ");
    }

    @Test
    void statusShowsTrackersSnapshotsStorageUseAndTheLastBackupOfEachDevice() throws Exception {
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir.resolve("data"), List.of("disk0=16M", "vm1=16M"),
                List.of("diff_storage_minimum=16384"))) {
            List<String> fresh = d.ok("status").lines().toList();
            assertThat(fresh.getFirst()).isEqualTo("blksnapd 1.0.0.0: 2 devices, 0 snapshots");
            assertThat(fresh).contains("snapshots:", "  (none)");
            assertThat(fresh.stream().filter(l -> l.startsWith("  vm1 ")).findFirst().orElseThrow())
                    .matches("  vm1    16\\.0 MiB  untracked  nbd\\+unix:///vm1\\?socket=.*");

            String[] point = d.ok("backup", "--repo", repo.toString(), "--device", "disk0", "--storage-size", "8M",
                    "--storage-limit", "16M").split(" ");
            String generation = d.firstTracker().path("generationId").asString().substring(0, 8);

            String id = d.ok("snapshot", "create", "--device", "disk0");
            d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("ds").toString(), "--size", "8M");
            d.ok("snapshot", "take", "--id", id);
            // 2 MiB written after take: 8 chunks of 256 KiB copied, 2 MiB of the 8 MiB used
            d.daemon().engine().device("disk0").write(ByteBuffer.allocate(2 << 20), 0);

            List<String> text = d.ok("status").lines().toList();
            assertThat(text.getFirst()).isEqualTo("blksnapd 1.0.0.0: 2 devices, 1 snapshot");
            assertThat(text.get(2)).startsWith("  disk0  16.0 MiB  generation " + generation
                    + " snapshot #2 reason=NEW_TRACKER  in " + id.substring(0, 8) + "  nbd+unix:///disk0?socket=");
            assertThat(text.get(5)).matches("  " + id + " taken [0-9]+s ago \\(\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC\\)  disk0");
            assertThat(text.get(6)).matches("    storage \\[#+-+]  25%  2\\.0 MiB of 8\\.0 MiB, 8 chunks copied")
                    .hasSizeLessThan(80).doesNotContain("\u001b");
            assertThat(text.get(7)).startsWith("    disk0 blksnap-image0 nbd+unix:///blksnap-image0?socket=");
            assertThat(text).hasSize(8);

            List<String> withRepo = d.ok("status", "--repo", repo.toString()).lines().toList();
            assertThat(withRepo.subList(0, 8).stream().map(StatusCommandTest::ageless).toList())
                    .isEqualTo(text.stream().map(StatusCommandTest::ageless).toList());
            assertThat(withRepo.subList(8, withRepo.size())).hasSize(3);
            assertThat(withRepo.get(8)).isEqualTo("last backups in " + repo.toAbsolutePath() + ":");
            assertThat(withRepo.get(9)).matches("  disk0  \\S+ full " + point[1] + " \\(generation " + generation
                    + " snapshot #1\\)");
            assertThat(withRepo.get(10)).isEqualTo("  vm1    none");

            JsonMapper json = JsonMapper.builder().build();
            JsonNode plain = json.readTree(d.ok("--json", "status"));
            assertThat(plain.has("lastBackups")).isFalse();
            assertThat(plain.path("snapshots").get(0).path("takenAtMillis").asLong())
                    .isBetween(System.currentTimeMillis() - 60_000, System.currentTimeMillis());
            JsonNode extended = json.readTree(d.ok("--json", "status", "--repo", repo.toString()));
            assertThat(extended.path("devices")).isEqualTo(plain.path("devices"));
            assertThat(extended.path("lastBackups")).hasSize(1);
            assertThat(extended.path("lastBackups").get(0).path("id").asString()).isEqualTo(point[1]);
            assertThat(extended.path("lastBackups").get(0).path("device").asString()).isEqualTo("disk0");

            var missing = d.cli("status", "--repo", dir.resolve("nothing-here").toString());
            assertThat(missing.exitCode()).as(missing.toString()).isEqualTo(66);
            assertThat(missing.err()).startsWith("blksnap: status: NOT_FOUND: no repository at ");
            d.ok("snapshot", "destroy", "--id", id);
        }
    }
}
