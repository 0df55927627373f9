package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.NbdFuseMount;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Port of upstream 1000-simple with two devices and a kernel ext4 on each export (nbdfuse + loop):
 * files with checksums before take; take with both filesystems frozen; files written after take on
 * the original; the image mounts and holds exactly the files of take time; files written into the
 * image survive a remount; the original is unchanged by all of it and by destroy.
 */
@Tag("system")
class SimpleTwoDevicesTest {
    @TempDir
    Path dir;
    final Random random = new Random(1000);

    private Map<String, String> writeFiles(Path mp, String prefix, int n) throws Exception {
        return FileSet.write(mp, prefix, n, random);
    }

    private static void check(Path mp, Map<String, String> sums) throws Exception {
        FileSet.check(mp, sums);
    }

    @Test
    void imageHoldsTheTakeTimeFilesImageWritesSurviveARemountAndTheOriginalIsUntouched() throws Exception {
        try (DaemonHarness d = DaemonHarness.start(dir.resolve("data"), List.of("dev1=64M", "dev2=128M"),
                List.of("diff_storage_minimum=65536"));
             NbdFuseMount m1 = NbdFuseMount.attach(d.uri("dev1"));
             NbdFuseMount m2 = NbdFuseMount.attach(d.uri("dev2"))) {
            m1.mkfsExt4();
            m2.mkfsExt4();
            Path mnt1 = m1.mount();
            Path mnt2 = m2.mount();
            Map<String, String> before = writeFiles(mnt1, "before", 9);

            String id = d.ok("snapshot", "create", "--device", "dev1", "--device", "dev2");
            d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("diff_storage0").toString(),
                    "--size", "256M");
            d.ok("snapshot", "take", "--id", id, "--freeze", mnt1.toString(), "--freeze", mnt2.toString());
            assertThat(d.ok("snapshot", "collect")).isEqualTo(id);
            assertThat(d.ok("snapshot", "images", "--id", id).lines().toList()).containsExactly(
                    "dev1 blksnap-image0 " + d.uri("blksnap-image0"), "dev2 blksnap-image1 " + d.uri("blksnap-image1"));

            Map<String, String> after = writeFiles(mnt1, "after", 3);
            check(mnt1, before);
            check(mnt1, after);

            try (NbdFuseMount img = NbdFuseMount.attach(d.uri("blksnap-image0"))) {
                Path mntImage = img.mount();
                check(mntImage, before);
                for (String f : after.keySet()) {
                    assertThat(mntImage.resolve(f)).as("file written after take").doesNotExist();
                }
                Map<String, String> inImage = writeFiles(mntImage, "snapshot", 3);
                img.unmount();
                mntImage = img.mount();
                check(mntImage, before);
                check(mntImage, inImage);
                img.fsfreeze(true);
                img.fsfreeze(false);
                img.unmount();
                ExternalTool.Result fsck = ExternalTool.run(java.time.Duration.ofSeconds(120), "e2fsck", "-fn",
                        img.loopDevice());
                assertThat(fsck.exitCode()).as("the image's filesystem is clean: %s", fsck.describe()).isZero();
            }
            d.ok("snapshot", "destroy", "--id", id);
            m1.unmount();
            mnt1 = m1.mount();
            check(mnt1, before);
            check(mnt1, after);
            for (int i = 0; i < 3; i++) {
                assertThat(mnt1.resolve("snapshot" + i)).as("image writes never reach the original").doesNotExist();
            }
            assertThat(d.ok("tracker", "collect").lines().toList()).hasSize(2);
            m1.unmount();
            ExternalTool.Result fsck = ExternalTool.run(java.time.Duration.ofSeconds(120), "e2fsck", "-fn", m1.loopDevice());
            assertThat(fsck.exitCode()).as("the original's filesystem is clean: %s", fsck.describe()).isZero();
        }
    }
}
