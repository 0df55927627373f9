package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.engine.scenario.Io.MiB;

import java.nio.file.Path;
import java.util.List;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.Errno;
import org.blksnap.engine.Params;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Upstream 5000-pullout, at engine level: a device that disappears while it is in a snapshot.
 * The snapshot is corrupted (an ENODEV event), the other devices keep working, and the snapshot
 * can still be taken-or-refused and destroyed cleanly.
 */
class PullOutTest {
    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private Blksnap engine;

    @BeforeEach
    void up() throws Exception {
        Params p = new Params();
        p.set("chunk_minimum_shift", 16);
        p.set("diff_storage_minimum", 4096);
        engine = BlksnapModule.init(p);
        engine.addDevice("d0", BlockDevices.open(dir.resolve("d0.img"), 4 * MiB, false));
        engine.addDevice("d1", BlockDevices.open(dir.resolve("d1.img"), 4 * MiB, false));
    }

    @AfterEach
    void down() {
        engine.close();
    }

    @Test
    void pullingOutADeviceOfATakenSnapshotCorruptsItWithEnodevAndTheOtherOriginalKeepsWorking() throws Exception {
        UUID id = engine.snapshotCreate(List.of("d0", "d1"));
        engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff"), 8 * MiB));
        engine.snapshotTake(id, TakeHooks.NONE);
        List<String> images = engine.snapshotCollectImages(id).stream().map(i -> i.image()).toList();

        engine.removeDevice("d1", true);

        assertThat(Io.drainEvents(engine, id)).filteredOn(e -> e instanceof SnapshotEvent.Corrupted)
                .map(e -> (SnapshotEvent.Corrupted) e).extracting(c -> c.device() + " " + c.errno())
                .containsExactly("d1 19");
        for (String image : images) {
            assertThat(Io.errnoOf(() -> Io.read(engine.image(image), 0, 512))).as(image).isEqualTo(Errno.EIO);
        }
        Io.write(engine.device("d0"), 0, new byte[] {1, 2, 3});
        assertThat(Io.read(engine.device("d0"), 0, 3)).containsExactly(1, 2, 3);
        assertThat(Io.errnoOf(() -> engine.device("d1"))).isEqualTo(Errno.ENXIO);
        engine.snapshotDestroy(id);
        assertThat(engine.trackerCollect()).extracting(i -> i.device()).containsExactly("d0");
    }

    @Test
    void takingASnapshotWhoseDeviceWasPulledOutFailsWithEfaultAndDropsTheSnapshot() throws Exception {
        UUID id = engine.snapshotCreate(List.of("d0", "d1"));
        engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff"), 8 * MiB));
        engine.removeDevice("d1", true);

        assertThat(Io.errnoOf(() -> engine.snapshotTake(id, TakeHooks.NONE)))
                .as("v1: a diff area corrupted at take fails it with EFAULT and the snapshot is released")
                .isEqualTo(Errno.EFAULT);
        assertThat(engine.snapshotCollect()).doesNotContain(id);
        UUID again = engine.snapshotCreate(List.of("d0"));
        assertThat(engine.snapshotCollect()).containsExactly(again);
    }
}
