package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.LoopDevice;
import org.blksnap.testing.NbdFuseMount;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Port of upstream 1100-loop_diff_storage: the difference storage is a whole 128 MiB block device
 * (a loop device), appended by its path with no ranges; the original is a 128 MiB ext4. Then the
 * checks of 1000-simple: the original after take, the image as at take, files written into the
 * image survive a remount, the original unchanged after destroy. The storage device holds the
 * copied chunks, so its first bytes are no longer zero.
 */
@Tag("system")
class BlockDeviceStorageTest {
    @TempDir
    Path dir;

    @Test
    void aWholeBlockDeviceServesAsDifferenceStorage() throws Exception {
        Path storageFile = dir.resolve("storage.img");
        try (RandomAccessFile f = new RandomAccessFile(storageFile.toFile(), "rw")) {
            f.setLength(128L << 20);
        }
        Random random = new Random(1100);
        try (LoopDevice storage = LoopDevice.attach(storageFile, 0);
             DaemonHarness d = DaemonHarness.start(dir.resolve("data"), List.of("dev1=128M"),
                     List.of("diff_storage_minimum=65536"));
             NbdFuseMount orig = NbdFuseMount.attach(d.uri("dev1"))) {
            orig.mkfsExt4();
            Path mnt = orig.mount();
            Map<String, String> before = FileSet.write(mnt, "before", 9, random);

            String id = d.ok("snapshot", "create", "--device", "dev1");
            d.ok("snapshot", "append-storage", "--id", id, "--file", storage.path().toString());
            assertThat(d.ok("--json", "status")).as("capacity of the whole device, in sectors")
                    .contains("\"capacitySectors\":262144");
            d.ok("snapshot", "take", "--id", id, "--freeze", mnt.toString());

            Map<String, String> after = FileSet.write(mnt, "after", 3, random, 256 << 10, 1 << 20);
            FileSet.check(mnt, before);
            FileSet.check(mnt, after);
            try (NbdFuseMount img = NbdFuseMount.attach(d.uri("blksnap-image0"))) {
                Path mntImage = img.mount();
                FileSet.check(mntImage, before);
                FileSet.checkAbsent(mntImage, after, "written to the original after take");
                Map<String, String> inImage = FileSet.write(mntImage, "snapshot", 3, random);
                img.unmount();
                mntImage = img.mount();
                FileSet.check(mntImage, before);
                FileSet.check(mntImage, inImage);
                img.unmount();
                ExternalTool.Result fsck = ExternalTool.run(Duration.ofSeconds(120), "e2fsck", "-fn", img.loopDevice());
                assertThat(fsck.exitCode()).as("the image's filesystem is clean: %s", fsck.describe()).isZero();
                FileSet.checkAbsent(mnt, inImage, "written to the image");
            }
            assertThat(nonZero(storage.path())).as("copied chunks landed on the storage device").isTrue();
            d.ok("snapshot", "destroy", "--id", id);
            orig.unmount();
            Path again = orig.mount();
            FileSet.check(again, before);
            FileSet.check(again, after);
            orig.unmount();
        }
    }

    /** Whether the first 8 MiB of the device hold anything but zeros (the storage hands out from its start). */
    private static boolean nonZero(Path device) throws Exception {
        try (RandomAccessFile f = new RandomAccessFile(device.toFile(), "r")) {
            byte[] b = new byte[8 << 20];
            f.readFully(b);
            for (byte x : b) {
                if (x != 0) {
                    return true;
                }
            }
            return false;
        }
    }
}
