package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The spec's wrong-order table (section (h)), call by call through the blksnap tool against a real
 * daemon: each call in the wrong state fails with its documented error name and exits with its number.
 */
class WrongOrderTest {
    @TempDir
    Path dir;
    DaemonHarness d;

    @BeforeEach
    void start() throws Exception {
        d = DaemonHarness.start(dir, List.of("disk0=16M", "disk1=16M", "disk2=16M"),
                List.of("diff_storage_minimum=16384"));
    }

    @AfterEach
    void stop() throws Exception {
        d.close();
    }

    private String storage(String name) {
        return dir.resolve(name).toString();
    }

    @Test
    void takeOfAnUnknownSnapshotIsEsrch3() {
        d.fails(3, "ESRCH", "snapshot", "take", "--id", UUID.randomUUID().toString());
    }

    @Test
    void aSecondTakeIsEalready114() {
        String id = d.ok("snapshot", "create", "--device", "disk0");
        d.ok("snapshot", "append-storage", "--id", id, "--file", storage("ds0"), "--size", "8M");
        d.ok("snapshot", "take", "--id", id);
        d.fails(114, "EALREADY", "snapshot", "take", "--id", id);
    }

    @Test
    void takeWithoutStorageIsEfault14AndTheSnapshotIsGone() {
        String id = d.ok("snapshot", "create", "--device", "disk0");
        d.fails(14, "EFAULT", "snapshot", "take", "--id", id);
        assertThat(d.ok("snapshot", "collect")).doesNotContain(id);
        d.fails(3, "ESRCH", "snapshot", "take", "--id", id);
    }

    @Test
    void collectImagesBeforeTakeIsEnodev19() {
        String id = d.ok("snapshot", "create", "--device", "disk0");
        d.fails(19, "ENODEV", "snapshot", "images", "--id", id);
    }

    @Test
    void appendStorageWaitEventAndCollectImagesOfAnUnknownSnapshotAreEsrch3() {
        String unknown = UUID.randomUUID().toString();
        d.fails(3, "ESRCH", "snapshot", "append-storage", "--id", unknown, "--file", storage("x"), "--size", "1M");
        d.fails(3, "ESRCH", "snapshot", "wait-event", "--id", unknown, "--timeout", "10");
        d.fails(3, "ESRCH", "snapshot", "images", "--id", unknown);
    }

    @Test
    void destroyOfAnUnknownSnapshotIsEnodev19() {
        d.fails(19, "ENODEV", "snapshot", "destroy", "--id", UUID.randomUUID().toString());
    }

    @Test
    void readCbtMapWithoutATakenSnapshotIsEperm1() {
        String id = d.ok("snapshot", "create", "--device", "disk0");
        d.fails(1, "EPERM", "tracker", "read-cbt-map", "--device", "disk0", "--file", storage("m"));
        d.ok("snapshot", "destroy", "--id", id);
        d.fails(1, "EPERM", "tracker", "read-cbt-map", "--device", "disk0", "--file", storage("m"));
    }

    @Test
    void trackerRemoveWhileInASnapshotIsEbusy16() {
        String id = d.ok("snapshot", "create", "--device", "disk0");
        d.fails(16, "EBUSY", "tracker", "remove", "--device", "disk0");
        d.ok("snapshot", "append-storage", "--id", id, "--file", storage("ds0"), "--size", "8M");
        d.ok("snapshot", "take", "--id", id);
        d.fails(16, "EBUSY", "tracker", "remove", "--device", "disk0");
        d.ok("snapshot", "destroy", "--id", id);
        d.ok("tracker", "remove", "--device", "disk0");
    }

    @Test
    void trackerRemoveWithoutATrackerIsEnodata61() {
        d.fails(61, "ENODATA", "tracker", "remove", "--device", "disk1");
    }

    @Test
    void markDirtyWithoutATrackerIsEnodev19() {
        d.fails(19, "ENODEV", "tracker", "mark-dirty", "--device", "disk1", "--range", "0:8");
    }

    @Test
    void createWithADuplicateDeviceIsEinval22() {
        d.fails(22, "EINVAL", "snapshot", "create", "--device", "disk0", "--device", "disk0");
    }

    @Test
    void createWithAnUnknownDeviceIsEnxio6() {
        d.fails(6, "ENXIO", "snapshot", "create", "--device", "disk9");
    }

    @Test
    void createWithADeviceAlreadyInASnapshotIsEbusy16() {
        d.ok("snapshot", "create", "--device", "disk0");
        d.fails(16, "EBUSY", "snapshot", "create", "--device", "disk1", "--device", "disk0");
    }

    @Test
    void waitEventTimeoutIsEnoent2AfterTheFirstLowSpaceEvent() {
        String id = d.ok("snapshot", "create", "--device", "disk0");
        assertThat(d.ok("snapshot", "wait-event", "--id", id, "--timeout", "100"))
                .isEqualTo("low_free_space requested_sectors=16384");
        d.fails(2, "ENOENT", "snapshot", "wait-event", "--id", id, "--timeout", "50");
    }

    @Test
    void theV1AliasesReportTheSameCodes() {
        d.fails(3, "ESRCH", "snapshot_take", "-i", UUID.randomUUID().toString());
        d.fails(19, "ENODEV", "snapshot_destroy", "-i", UUID.randomUUID().toString());
        d.fails(61, "ENODATA", "tracker_remove", "-d", "disk2");
    }
}
