package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.blksnap.cli.CliRun;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.LoopDevice;
import org.blksnap.testing.NbdFuseMount;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Backups of a kernel ext4 on an export (nbdfuse + loop): in each cycle files are written, the
 * filesystem is frozen, the export is recorded with nbdcopy and backed up, then thawed, so the
 * recording is the content at the take. Every point restores bit for bit; the last one is restored
 * onto a block device (a loop device over a file full of garbage, so zero chunks must be written)
 * that mounts with exactly the files of its cycle; a cycle with `--freeze` gives a filesystem that
 * mounts and checks clean.
 */
@Tag("system")
class BackupExt4Test {
    @TempDir
    Path dir;
    final Random random = new Random(1100);

    @Test
    void pointsOfALiveExt4RestoreBitForBitAndMountWithTheirFiles() throws Exception {
        ExternalTool.require("root", "nbdcopy", "mkfs.ext4", "fsfreeze", "e2fsck");
        Path repo = dir.resolve("repo");
        try (DaemonHarness d = DaemonHarness.start(dir.resolve("data"), List.of("disk0=128M"), List.of());
             NbdFuseMount m = NbdFuseMount.attach(d.uri("disk0"))) {
            m.mkfsExt4();
            Path mnt = m.mount();
            String[] ids = new String[3];
            Path[] recs = new Path[3];
            Map<String, String> files = Map.of();
            long[] read = new long[3];
            for (int cycle = 0; cycle < 3; cycle++) {
                files = new java.util.HashMap<>(files);
                files.putAll(FileSet.write(mnt, "cycle" + cycle, 6, random));
                m.sync();
                m.fsfreeze(true);
                try {
                    recs[cycle] = dir.resolve("rec" + cycle + ".img");
                    ExternalTool.run(Duration.ofSeconds(60), "nbdcopy", d.uri("disk0"), recs[cycle].toString()).assertSuccess();
                    CliRun r = d.cli("backup", "--repo", repo.toString(), "--device", "disk0", "--storage-size", "32M",
                            "--storage-limit", "64M");
                    assertThat(r.exitCode()).as(r.toString()).isZero();
                    String[] f = r.line().split(" ");
                    assertThat(f[2]).isEqualTo(cycle == 0 ? "full" : "incremental");
                    ids[cycle] = f[1];
                    read[cycle] = Long.parseLong(f[3]);
                } finally {
                    m.fsfreeze(false);
                }
            }
            assertThat(read[0]).isEqualTo(128L << 20);
            assertThat(read[1]).as("6 files of a few KiB plus ext4 metadata, not the device").isLessThan(8L << 20);
            for (int i = 0; i < 3; i++) {
                Path out = dir.resolve("out" + i + ".img");
                d.ok("restore", "--repo", repo.toString(), "--point", ids[i], "--to", out.toString());
                assertThat(Files.mismatch(out, recs[i])).as("point %d", i).isEqualTo(-1L);
            }
            // onto a block device full of garbage: zero chunks are written, the filesystem mounts with its files
            Path garbage = dir.resolve("garbage.img");
            byte[] junk = new byte[1 << 20];
            random.nextBytes(junk);
            try (var out = Files.newOutputStream(garbage)) {
                for (int i = 0; i < 128; i++) {
                    out.write(junk);
                }
            }
            try (LoopDevice loop = LoopDevice.attach(garbage, 0)) {
                d.ok("restore", "--repo", repo.toString(), "--point", ids[2], "--to", loop.path().toString());
                ExternalTool.run(Duration.ofSeconds(60), "e2fsck", "-f", "-n", loop.path().toString()).assertSuccess();
                Path restoredMnt = Files.createDirectory(dir.resolve("restored-mnt"));
                ExternalTool.run(Duration.ofSeconds(60), "mount", "-o", "ro", loop.path().toString(), restoredMnt.toString())
                        .assertSuccess();
                try {
                    FileSet.check(restoredMnt, files);
                } finally {
                    ExternalTool.run(Duration.ofSeconds(60), "umount", restoredMnt.toString()).assertSuccess();
                }
            }
            assertThat(Files.mismatch(garbage, recs[2])).isEqualTo(-1L);
            // with --freeze: taken frozen by the daemon, the point checks clean
            Map<String, String> more = FileSet.write(mnt, "frozen", 4, random);
            CliRun r = d.cli("backup", "--repo", repo.toString(), "--device", "disk0", "--freeze", mnt.toString(),
                    "--storage-size", "32M", "--storage-limit", "64M");
            assertThat(r.exitCode()).as(r.toString()).isZero();
            Path out = dir.resolve("frozen.img");
            d.ok("restore", "--repo", repo.toString(), "--point", r.line().split(" ")[1], "--to", out.toString());
            ExternalTool.run(Duration.ofSeconds(60), "e2fsck", "-f", "-n", out.toString()).assertSuccess();
            try (LoopDevice loop = LoopDevice.attach(out, 0)) {
                Path frozenMnt = Files.createDirectory(dir.resolve("frozen-mnt"));
                ExternalTool.run(Duration.ofSeconds(60), "mount", "-o", "ro", loop.path().toString(), frozenMnt.toString())
                        .assertSuccess();
                try {
                    FileSet.check(frozenMnt, files);
                    FileSet.check(frozenMnt, more);
                } finally {
                    ExternalTool.run(Duration.ofSeconds(60), "umount", frozenMnt.toString()).assertSuccess();
                }
            }
            assertThat(d.ok("verify", "--repo", repo.toString())).startsWith("ok: 4 point(s)");
        }
    }
}
