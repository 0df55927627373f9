package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.blksnap.cli.CliRun;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.NbdFuseMount;
import org.blksnap.testing.RepoFiles;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Instant access with real clients: points of a live ext4 (backed up frozen, files recorded) served
 * by {@code blksnap serve} as its own process; {@code nbdinfo --list} shows every point, also one
 * backed up while it serves; each point attached with nbdfuse + loop mounts read-only with exactly
 * its files; {@code qemu-img compare} finds the export equal to a restore; with {@code --writable}
 * the filesystem takes new files that read back (after a remount too) while the repository stays
 * byte for byte unchanged and verifies; SIGTERM stops the server and removes its socket and
 * overlays; a damaged chunk gives the reader EIO, never other data.
 */
@Tag("system")
class ServeTest {
    private static final Duration T = Duration.ofSeconds(120);

    @TempDir
    Path dir;
    final Random random = new Random(1200);

    /** {@code blksnap serve ARGS} as its own JVM (the test classpath), output to a log. */
    private static final class Serve implements AutoCloseable {
        final Process process;
        final Path log;
        final Path socket;

        Serve(Path dir, String name, Path repo, String... extra) throws IOException {
            socket = dir.resolve(name + ".sock");
            log = dir.resolve(name + ".log");
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                    "org.blksnap.cli.Main", "serve", "--repo", repo.toString(), "--socket", socket.toString()));
            cmd.addAll(List.of(extra));
            process = ExternalTool.start(Map.of(), dir, cmd, log);
            try {
                await().atMost(Duration.ofSeconds(60)).until(() -> output().contains("serving ") || !process.isAlive());
                assertThat(process.isAlive()).as("serve exited: %s", output()).isTrue();
            } catch (RuntimeException | AssertionError e) {
                close();
                throw e;
            }
        }

        String output() throws IOException {
            return Files.exists(log) ? Files.readString(log) : "";
        }

        String uri(String export) {
            return "nbd+unix:///" + export + "?socket=" + socket;
        }

        /** SIGTERM, then the exit status. */
        int stop() throws Exception {
            process.destroy();
            assertThat(process.waitFor(30, TimeUnit.SECONDS)).as("serve stops on SIGTERM").isTrue();
            return process.exitValue();
        }

        @Override
        public void close() {
            ExternalTool.killTree(process);
        }
    }

    /** Attaches the export with nbdfuse + loop and mounts it read-only on a directory of its own. */
    private Path mountReadOnly(NbdFuseMount m, String name) throws IOException {
        Path mnt = Files.createDirectory(dir.resolve(name));
        ExternalTool.run(T, "mount", "-o", "ro", m.loopDevice(), mnt.toString()).assertSuccess();
        return mnt;
    }

    private static void umount(Path mnt) {
        ExternalTool.run(T, "umount", mnt.toString()).assertSuccess();
    }

    @Test
    void pointsServedByBlksnapServeMountWithTheirFilesCompareEqualToARestoreAndTakeWritesInAnOverlayOnly()
            throws Exception {
        ExternalTool.require("root", "nbdcopy", "nbdinfo", "qemu-img", "qemu-io", "mkfs.ext4", "fsfreeze");
        Path repo = dir.resolve("repo");
        String[] ids = new String[2];
        List<Map<String, String>> files = new ArrayList<>();
        try (DaemonHarness d = DaemonHarness.start(dir.resolve("data"), List.of("disk0=64M"), List.of())) {
            try (NbdFuseMount m = NbdFuseMount.attach(d.uri("disk0"))) {
                m.mkfsExt4();
                Path mnt = m.mount();
                for (int cycle = 0; cycle < 2; cycle++) {
                    files.add(FileSet.write(mnt, "cycle" + cycle, 6, random));
                    CliRun r = d.cli("backup", "--repo", repo.toString(), "--device", "disk0", "--freeze", mnt.toString(),
                            "--storage-size", "32M", "--storage-limit", "64M");
                    assertThat(r.exitCode()).as(r.toString()).isZero();
                    ids[cycle] = r.line().split(" ")[1];
                }
            }
            Map<String, String> repoBefore = RepoFiles.checksums(repo);

            try (Serve s = new Serve(dir, "ro", repo)) {
                assertThat(s.output()).contains(ids[0] + "/disk0 nbd+unix:///" + ids[0] + "/disk0?socket=")
                        .contains(ids[1] + "/disk0");
                String list = ExternalTool.run(T, "nbdinfo", "--list", s.uri("")).assertSuccess().stdout();
                for (String id : ids) {
                    assertThat(list).contains("export=\"" + id + "/disk0\"").contains("description: device disk0, ");
                }
                // a point backed up while serving is an export at once
                CliRun r = d.cli("backup", "--repo", repo.toString(), "--device", "disk0", "--storage-size", "32M");
                assertThat(r.exitCode()).as(r.toString()).isZero();
                String third = r.line().split(" ")[1];
                assertThat(ExternalTool.run(T, "nbdinfo", "--list", s.uri("")).assertSuccess().stdout())
                        .contains("export=\"" + third + "/disk0\"");
                repoBefore = RepoFiles.checksums(repo);

                // the export equals a restore of the same point
                Path restored = dir.resolve("restored0.img");
                d.ok("restore", "--repo", repo.toString(), "--point", ids[0], "--to", restored.toString());
                ExternalTool.run(T, "qemu-img", "compare", "-f", "raw", "-F", "raw", restored.toString(),
                        s.uri(ids[0] + "/disk0")).assertSuccess();
                // base:allocation: the free space of the filesystem is holes
                String map = ExternalTool.run(T, "nbdinfo", "--map", s.uri(ids[0] + "/disk0")).assertSuccess().stdout();
                assertThat(map).contains("hole,zero").contains("data");

                // each point mounts read-only with the files of its cycle and none of the later ones
                for (int cycle = 0; cycle < 2; cycle++) {
                    try (NbdFuseMount m = NbdFuseMount.attach(s.uri(ids[cycle] + "/disk0"))) {
                        Path mnt = mountReadOnly(m, "ro" + cycle);
                        try {
                            for (int c = 0; c <= cycle; c++) {
                                FileSet.check(mnt, files.get(c));
                            }
                            if (cycle == 0) {
                                FileSet.checkAbsent(mnt, files.get(1), "written after point 0");
                            }
                        } finally {
                            umount(mnt);
                        }
                    }
                }
                assertThat(s.stop()).isEqualTo(143);
                assertThat(s.socket).as("the socket is removed at exit").doesNotExist();
                assertThat(s.output()).containsPattern("serve: stopped; cache: [1-9][0-9]* hits, [1-9][0-9]* misses, .*; "
                        + "[1-9][0-9]* chunks read ahead; 0 reads failed");
            }
            assertThat(RepoFiles.checksums(repo)).isEqualTo(repoBefore);

            // --writable: the filesystem takes files; the repository does not change
            Path overlays = Files.createDirectory(dir.resolve("overlays"));
            Map<String, String> added;
            try (Serve s = new Serve(dir, "rw", repo, "--writable", "--overlay-dir", overlays.toString(), "--cache", "16M")) {
                try (NbdFuseMount m = NbdFuseMount.attach(s.uri(ids[1] + "/disk0"))) {
                    Path mnt = m.mount();
                    FileSet.check(mnt, files.get(0));
                    FileSet.check(mnt, files.get(1));
                    added = FileSet.write(mnt, "overlay", 8, random, 4096, 2 << 20);
                    Files.delete(mnt.resolve("cycle00"));
                    m.sync();
                    FileSet.check(mnt, added);
                    m.unmount();
                    Path again = m.mount();
                    FileSet.check(again, added);
                    FileSet.check(again, files.get(1));
                    assertThat(again.resolve("cycle00")).doesNotExist();
                    m.unmount();
                    ExternalTool.run(T, "e2fsck", "-f", "-n", m.loopDevice()).assertSuccess();
                }
                try (Stream<Path> left = Files.list(overlays)) {
                    assertThat(left.toList()).as("overlay files are unlinked while open").isEmpty();
                }
                assertThat(s.stop()).isEqualTo(143);
                assertThat(s.socket).doesNotExist();
                assertThat(s.output()).containsPattern("; [1-9][0-9]* bytes in overlays");
            }
            assertThat(RepoFiles.checksums(repo)).as("every repository file byte for byte").isEqualTo(repoBefore);
            assertThat(d.ok("verify", "--repo", repo.toString())).startsWith("ok: 3 point(s)");
            // the point still has its own files only
            try (Serve s = new Serve(dir, "ro2", repo); NbdFuseMount m = NbdFuseMount.attach(s.uri(ids[1] + "/disk0"))) {
                Path mnt = mountReadOnly(m, "ro-after");
                try {
                    FileSet.check(mnt, files.get(1));
                    FileSet.checkAbsent(mnt, added, "written to the overlay only");
                } finally {
                    umount(mnt);
                }
            }

            // a damaged chunk: the reader gets EIO, never other data
            Path restored1 = dir.resolve("restored1.img");
            d.ok("restore", "--repo", repo.toString(), "--point", ids[1], "--to", restored1.toString());
            long damagedOffset = damageAChunkOf(repo, restored1);
            try (Serve s = new Serve(dir, "damaged", repo)) {
                ExternalTool.Result bad = ExternalTool.run(T, "qemu-io", "-r", "-f", "raw", "-c",
                        "read " + damagedOffset + " 65536", s.uri(ids[1] + "/disk0"));
                assertThat(bad.stdout() + bad.stderr()).contains("Input/output error");
                ExternalTool.Result good = ExternalTool.run(T, "qemu-io", "-r", "-f", "raw", "-c",
                        "read 0 65536", s.uri(ids[1] + "/disk0"));
                assertThat(good.stdout() + good.stderr()).doesNotContain("error").contains("read 65536/65536 bytes");
                ExternalTool.Result copy = ExternalTool.run(T, "nbdcopy", s.uri(ids[1] + "/disk0"), "null:");
                assertThat(copy.exitCode()).as("nbdcopy of a damaged point fails").isNotZero();
                assertThat(s.output()).contains("point " + ids[1] + " (disk0) chunk " + damagedOffset / 65536 + " ");
            }
        }
    }

    /**
     * Flips a byte in the stored copy of a chunk of the restored image that holds file data (random,
     * so stored uncompressed and found by its content in the packs); returns the chunk's offset.
     */
    private static long damageAChunkOf(Path repo, Path image) throws Exception {
        byte[] img = Files.readAllBytes(image);
        for (int chunk = img.length / 65536 - 1; chunk >= 0; chunk--) {
            byte[] probe = Arrays.copyOfRange(img, chunk * 65536 + 1000, chunk * 65536 + 1064);
            if (IntStream.range(0, probe.length).map(i -> probe[i] & 0xff).distinct().count() > 40
                    && RepoFiles.flipByteOfStoredCopy(repo, probe) != null) {
                return chunk * 65536L;
            }
        }
        throw new AssertionError("no chunk of file data found stored raw in the packs");
    }
}
