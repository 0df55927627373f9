package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Random;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.NbdFuseMount;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A real kernel filesystem (ext4) on our server, through nbdfuse and a loop device. */
@Tag("system")
class NbdFilesystemTest {
    @TempDir
    Path dir;

    @Test
    void ext4OnOurServerSurvivesWritesFreezeRemountAndFsck() throws Exception {
        ExternalTool.require("root", "nbdfuse", "mkfs.ext4", "e2fsck", "fsfreeze");
        try (TestExports exports = new TestExports(); NbdServer server = new NbdServer(exports)) {
            exports.add(dir, "fs", 256L << 20, false);
            Path socket = server.listenUnix(dir.resolve("nbd.sock"));
            String uri = "nbd+unix:///fs?socket=" + socket;
            byte[] big = new byte[24 << 20];
            new Random(7).nextBytes(big);
            String digest = sha256(big);
            try (NbdFuseMount m = NbdFuseMount.attach(uri)) {
                m.mkfsExt4();
                Path root = m.mount();
                Files.write(root.resolve("big.bin"), big);
                for (int i = 0; i < 50; i++) {
                    Files.writeString(root.resolve("small-" + i + ".txt"), "file " + i);
                }
                m.sync();
                m.fsfreeze(true);
                assertThat(sha256(Files.readAllBytes(root.resolve("big.bin")))).isEqualTo(digest);
                m.fsfreeze(false);
                Files.writeString(root.resolve("after-thaw.txt"), "thawed");
                m.unmount();
                root = m.mount();
                assertThat(sha256(Files.readAllBytes(root.resolve("big.bin")))).isEqualTo(digest);
                assertThat(Files.readString(root.resolve("small-49.txt"))).isEqualTo("file 49");
                assertThat(Files.readString(root.resolve("after-thaw.txt"))).isEqualTo("thawed");
                m.unmount();
            }
            assertThat(server.stats().get("fs").bytesWritten()).isGreaterThan(big.length);
        }
        ExternalTool.Result fsck = ExternalTool.run(Duration.ofSeconds(120), "e2fsck", "-fn", dir.resolve("fs.img").toString());
        assertThat(fsck.exitCode()).as(fsck.describe()).isZero();
    }

    @Test
    void teardownUndoesEverythingWhenTheTestFailsHalfway() throws Exception {
        ExternalTool.require("root", "nbdfuse", "mkfs.ext4");
        NbdFuseMount leaked;
        try (TestExports exports = new TestExports(); NbdServer server = new NbdServer(exports)) {
            exports.add(dir, "fs", 64L << 20, false);
            Path socket = server.listenUnix(dir.resolve("nbd.sock"));
            try (NbdFuseMount m = NbdFuseMount.attach("nbd+unix:///fs?socket=" + socket)) {
                leaked = m;
                m.mkfsExt4();
                Path root = m.mount();
                Files.writeString(root.resolve("x"), "y");
                m.fsfreeze(true); // left frozen and mounted on purpose
            }
        }
        String mounts = Files.readString(Path.of("/proc/mounts"));
        assertThat(mounts).doesNotContain(leaked.deviceFile().getParent().getParent().toString());
        String loops = ExternalTool.run(Duration.ofSeconds(30), "losetup", "-n", "-l", "-O", "BACK-FILE").stdout();
        assertThat(loops).doesNotContain(leaked.deviceFile().getParent().getParent().toString());
    }

    private static String sha256(byte[] data) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
    }
}
