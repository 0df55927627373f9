package org.blksnap.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.blksnap.ctrl.api.Replies;
import org.junit.jupiter.api.Test;

/** The text of {@code blksnap status}: what each line says, the bar's width and colour. */
class StatusViewTest {
    private static final UUID GEN = UUID.fromString("6f1c2a3b-0000-4000-8000-000000000001");
    private static final UUID SNAP = UUID.fromString("0c7e5a2e-3f41-4d0b-9a38-7e4a8b2f5c11");
    private static final long NOW = 1_795_000_000_000L;

    /** disk0 (1 GiB, tracked, in a snapshot taken 5m12s ago, 64 of 256 MiB used); vm1 untracked. */
    private static Replies.Status status(long usedSectors) {
        Replies.Tracker t = new Replies.Tracker("disk0", 65536, 1L << 30, 16384, GEN, 4, "NEW_TRACKER", null);
        return new Replies.Status("1.0.0.0", Map.of(), List.of(
                new Replies.DeviceStatus("disk0", 1L << 30, t, SNAP, "nbd://127.0.0.1:10809/disk0"),
                new Replies.DeviceStatus("vm1", 4L << 30, null, null, null)),
                List.of(new Replies.SnapshotStatus(SNAP, "taken", List.of("disk0"),
                        List.of(new Replies.StatusImage("disk0", "blksnap-image0", SNAP, 1L << 30,
                                "nbd://127.0.0.1:10809/blksnap-image0")),
                        (256L << 20) / 512, usedSectors, (256L << 20) / 512, 1024, 0, 0, NOW - 400_000,
                        NOW - 312_000)));
    }

    private static StatusView.Options plain(int columns) {
        return new StatusView.Options(null, Map.of(), NOW, columns, false);
    }

    @Test
    void showsDevicesTrackersAndSnapshotsWithAStorageBarThatFitsEightyColumns() {
        String text = StatusView.render(status((64L << 20) / 512), plain(80));
        assertThat(text.lines().toList()).containsExactly(
                "blksnapd 1.0.0.0: 2 devices, 1 snapshot",
                "devices:",
                "  disk0  1.0 GiB  generation 6f1c2a3b snapshot #4 reason=NEW_TRACKER  in 0c7e5a2e"
                        + "  nbd://127.0.0.1:10809/disk0",
                "  vm1    4.0 GiB  untracked",
                "snapshots:",
                "  0c7e5a2e-3f41-4d0b-9a38-7e4a8b2f5c11 taken 5m12s ago (2026-11-18 11:01:28 UTC)  disk0",
                "    storage [#####--------------]  25%  64.0 MiB of 256 MiB, 1024 chunks copied",
                "    disk0 blksnap-image0 nbd://127.0.0.1:10809/blksnap-image0");
        String bar = text.lines().filter(l -> l.startsWith("    storage")).findFirst().orElseThrow();
        assertThat(bar.length()).isLessThan(80);
        assertThat(text).doesNotContain("\u001b");
    }

    @Test
    void aSnapshotsLeaseIsShownWithWhatIsLeftOfIt() {
        Replies.Status s = status(0);
        Replies.SnapshotStatus sn = s.snapshots().getFirst();
        Replies.Status leased = new Replies.Status(s.version(), s.params(), s.devices(), List.of(
                new Replies.SnapshotStatus(sn.id(), sn.state(), sn.devices(), sn.images(), sn.capacitySectors(),
                        sn.usedSectors(), sn.requestedSectors(), sn.chunksCopied(), sn.pendingEvents(),
                        sn.corruptedErrno(), sn.createdAtMillis(), sn.takenAtMillis(), 60L, 47_500L)));
        assertThat(StatusView.render(leased, plain(120))).contains(
                "  0c7e5a2e-3f41-4d0b-9a38-7e4a8b2f5c11 taken 5m12s ago (2026-11-18 11:01:28 UTC)  disk0"
                        + "  lease 1m00s, 47s left");
    }

    @Test
    void theAgentsJobsAreListedWhenThereAreAny() {
        Replies.Status s = status(0);
        assertThat(StatusView.render(s, plain(120))).doesNotContain("agent");
        UUID job = UUID.fromString("9a8b7c6d-0000-4000-8000-000000000001");
        Replies.Status busy = new Replies.Status(s.version(), s.params(), s.devices(), s.snapshots(), List.of(
                new Replies.AgentJobStatus(job, List.of("backup", "--repo", "/srv/r", "--device", "disk0"),
                        NOW - 12_000, null),
                new Replies.AgentJobStatus(SNAP, List.of("backup", "--repo", "/srv/r", "--device", "vm1"),
                        NOW - 75_000, 0)));
        assertThat(StatusView.render(busy, plain(120)).lines().toList()).containsSequence(
                "backup agent jobs:",
                "  9a8b7c6d-0000-4000-8000-000000000001 running 12s  backup --repo /srv/r --device disk0",
                "  0c7e5a2e-3f41-4d0b-9a38-7e4a8b2f5c11 ended (exit 0) 1m15s  backup --repo /srv/r --device vm1");
    }

    @Test
    void theBarUsesTheWidthItIsGivenWithinItsBounds() {
        Replies.Status s = status((128L << 20) / 512);
        for (int columns : List.of(70, 80, 90, 100)) {
            String line = storageLine(StatusView.render(s, plain(columns)));
            assertThat(line).as("at %d columns", columns).hasSize(columns - 1);
        }
        assertThat(barWidth(StatusView.render(s, plain(200)))).isEqualTo(StatusView.MAX_BAR);
        assertThat(barWidth(StatusView.render(s, plain(40)))).isEqualTo(StatusView.MIN_BAR);
        String half = StatusView.render(s, plain(200));
        assertThat(half).contains("[" + "#".repeat(25) + "-".repeat(25) + "]  50%  128 MiB of 256 MiB");
    }

    private static int barWidth(String text) {
        String line = storageLine(text);
        return line.indexOf(']') - line.indexOf('[') - 1;
    }

    private static String storageLine(String text) {
        return text.lines().filter(l -> l.startsWith("    storage [")).findFirst().orElseThrow();
    }

    @Test
    void colourOnlyWhenAskedAndRedWhenTheStorageIsNearlyFull() {
        Replies.Status s = status((240L << 20) / 512);
        String colored = StatusView.render(s, new StatusView.Options(null, Map.of(), NOW, 80, true));
        assertThat(colored).contains("\u001b[31m#").contains("\u001b[1mblksnapd 1.0.0.0\u001b[0m").contains("93%");
        assertThat(StatusView.render(s, plain(80))).doesNotContain("\u001b");
    }

    @Test
    void withARepositoryEachDeviceGetsItsNewestPointOrNone() {
        Map<String, StatusView.LastBackup> last = Map.of("disk0", new StatusView.LastBackup("disk0", "p2",
                "2026-11-18T19:00:00Z", "incremental", GEN.toString(), 3));
        String text = StatusView.render(status(0), new StatusView.Options("/srv/repo", last, NOW, 80, false));
        assertThat(text.lines().toList()).endsWith("last backups in /srv/repo:",
                "  disk0  2026-11-18T19:00:00Z incremental p2 (generation 6f1c2a3b snapshot #3)",
                "  vm1    none");
    }

    @Test
    void sizesAndAgesReadAsPeopleWriteThem() {
        assertThat(StatusView.human(512)).isEqualTo("512 B");
        assertThat(StatusView.human(1536)).isEqualTo("1.5 KiB");
        assertThat(StatusView.human(256L << 20)).isEqualTo("256 MiB");
        assertThat(StatusView.human(10L << 40)).isEqualTo("10.0 TiB");
        assertThat(StatusView.age(42_000)).isEqualTo("42s");
        assertThat(StatusView.age(3 * 3600_000L + 5 * 60_000)).isEqualTo("3h05m");
        assertThat(StatusView.age(2 * 86400_000L + 4 * 3600_000L)).isEqualTo("2d04h");
    }
}
