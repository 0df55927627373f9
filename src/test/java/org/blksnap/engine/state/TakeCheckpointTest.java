package org.blksnap.engine.state;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.CbtInfo;
import org.blksnap.engine.GenerationReason;
import org.blksnap.engine.Params;
import org.blksnap.engine.Persistence;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * The checkpoints a take writes: for a snapshot of more devices than are written at once
 * ({@link StateStore.Take#PARALLEL_COMMITS}), every one is durable when the take returns, a device
 * whose checkpoint fails is the only one invalidated, and the checkpoint of an idle device leaves
 * its all-zero map pages out of the file (holes) and still restores bit for bit.
 */
class TakeCheckpointTest {
    static final long MiB = 1 << 20;
    static final int DEVICES = StateStore.Take.PARALLEL_COMMITS + 5;

    @TempDir
    Path dir;
    @RegisterExtension
    final StateStoreAccess.Engines open = new StateStoreAccess.Engines();

    Blksnap start(Path state, int devices, long sizeBytes) throws IOException {
        Params p = new Params();
        p.set("diff_storage_minimum", 8192);
        Blksnap e = BlksnapModule.init(p, new Persistence(state, MiB, Duration.ofHours(1)));
        open.add(e);
        for (int i = 0; i < devices; i++) {
            e.addDevice(name(i), BlockDevices.open(dir.resolve(name(i) + ".img"), sizeBytes, false));
        }
        return e;
    }

    static String name(int i) {
        return String.format("d%02d", i);
    }

    UUID take(Blksnap e, List<String> devices) {
        UUID id = e.snapshotCreate(devices);
        e.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("ds-" + id), 64 * MiB));
        e.snapshotTake(id, TakeHooks.NONE);
        return id;
    }

    Path crashCopy(Path state) throws IOException {
        return StateStoreAccess.crashCopy(dir, state);
    }

    @Test
    void everyCheckpointOfAManyDeviceTakeIsDurableWhenTheTakeReturns() throws Exception {
        Path state = dir.resolve("state");
        long size = 64L << 30; // sparse; maps of 1 Mi blocks: each checkpoint writes 2 MiB once marked all over
        Blksnap e = start(state, DEVICES, size);
        List<String> names = e.deviceNames();
        e.snapshotDestroy(take(e, names)); // take 1 attaches the trackers
        for (int i = 0; i < DEVICES; i++) {
            // every block changed, so no map page is left out of the file: each checkpoint writes all of it
            e.trackerMarkDirty(name(i), List.of(new SectorRange(0, size / SectorRange.SECTOR_BYTES)));
        }
        UUID id = take(e, names); // take 2
        for (String n : names) { // at once: a checkpoint still being written would show the epoch before
            assertThat(epochOnDisk(state, n)).as("%s: epoch of its checkpoint file", n)
                    .isEqualTo(StateStoreAccess.state(e, n).epoch());
        }
        Path crashed = crashCopy(state);
        Map<String, CbtInfo> infos = new HashMap<>();
        Map<String, byte[]> maps = new HashMap<>();
        for (String n : names) {
            infos.put(n, e.cbtInfo(n));
            maps.put(n, e.trackerReadCbtMap(n, 0, Integer.MAX_VALUE));
        }
        e.snapshotDestroy(id);
        e.close();

        Blksnap again = start(crashed, DEVICES, size);
        for (String n : names) {
            assertThat(again.cbtInfo(n)).as("%s: a backup tool saw take 2", n).isEqualTo(infos.get(n));
            assertThat(infos.get(n).snapNumber()).isEqualTo(2);
        }
        take(again, names); // nothing written since take 2: take 3's read maps are take 2's
        for (String n : names) {
            byte[] map = again.trackerReadCbtMap(n, 0, Integer.MAX_VALUE);
            assertThat(map).as("%s: the read map of take 2", n).isEqualTo(maps.get(n));
            assertThat(map).as("%s: marked all over before take 2", n).containsOnly((byte) 2);
        }
    }

    @Test
    void aCheckpointThatCannotBeWrittenAtATakeInvalidatesOnlyItsDevice() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state, DEVICES, 16 * MiB);
        List<String> names = e.deviceNames();
        e.snapshotDestroy(take(e, names));
        String failing = name(3);
        // checkpoint.tmp cannot be created as a file where a directory of that name stands
        Files.createDirectory(state.resolve(StateStore.TRACKERS).resolve(failing).resolve(DeviceState.CHECKPOINT + ".tmp"));
        UUID id = take(e, names);
        Path crashed = crashCopy(state);
        Map<String, CbtInfo> infos = new HashMap<>();
        for (String n : names) {
            infos.put(n, e.cbtInfo(n));
        }
        e.snapshotDestroy(id);
        e.close();

        Blksnap again = start(crashed, DEVICES, 16 * MiB);
        for (String n : names) {
            CbtInfo now = again.cbtInfo(n);
            if (n.equals(failing)) {
                assertThat(now.generationReason()).isEqualTo(GenerationReason.CHECKPOINT_FAILED);
                assertThat(now.generationId()).isNotEqualTo(infos.get(n).generationId());
            } else {
                assertThat(now).as(n).isEqualTo(infos.get(n));
            }
        }
    }

    @Test
    void theCheckpointOfAnIdleDeviceLeavesItsZeroPagesOutAndRestoresBitForBit() throws Exception {
        Path state = dir.resolve("state");
        long size = 1L << 40; // sparse: maps of 4 MiB each, nearly all of them zero
        Blksnap e = start(state, 1, size);
        String n = name(0);
        e.snapshotDestroy(take(e, List.of(n)));
        e.device(n).write(ByteBuffer.allocate(4096), 40L << 30);
        e.trackerMarkDirty(n, List.of(new SectorRange(0, 1)));
        UUID id = take(e, List.of(n));
        CbtInfo info = e.cbtInfo(n);
        byte[] map = e.trackerReadCbtMap(n, 0, Integer.MAX_VALUE);
        e.snapshotDestroy(id);
        Path checkpoint = state.resolve(StateStore.TRACKERS).resolve(n).resolve(DeviceState.CHECKPOINT);
        long length = Files.size(checkpoint);
        assertThat(length).as("two maps of %d blocks", info.blockCount()).isGreaterThan(2L * info.blockCount());
        // data only in the pieces of 64 KiB with the header, the two marked blocks in each map and the CRCs
        assertThat(allocatedBytes(checkpoint)).as("allocated of %d bytes", length).isLessThan(length / 8);
        e.close();

        Blksnap again = start(state, 1, size);
        assertThat(again.cbtInfo(n)).isEqualTo(info);
        take(again, List.of(n)); // nothing written since: its read map is the last one
        assertThat(again.trackerReadCbtMap(n, 0, Integer.MAX_VALUE)).isEqualTo(map);
    }

    /** The epoch field of {@code device}'s checkpoint file. */
    static long epochOnDisk(Path state, String device) throws IOException {
        Path p = state.resolve(StateStore.TRACKERS).resolve(device).resolve(DeviceState.CHECKPOINT);
        try (FileChannel ch = FileChannel.open(p)) {
            ByteBuffer b = ByteBuffer.allocate(Long.BYTES);
            ch.read(b, CheckpointDescriptor.EPOCH_OFFSET);
            return b.flip().getLong();
        }
    }

    /** The bytes the file system allocated for {@code p} ({@code stat}'s block count). */
    static long allocatedBytes(Path p) throws Exception {
        Process stat = new ProcessBuilder("stat", "-c", "%b %B", p.toString()).redirectErrorStream(true).start();
        String[] out = new String(stat.getInputStream().readAllBytes()).trim().split(" ");
        assertThat(stat.waitFor()).as("stat %s: %s", p, String.join(" ", out)).isZero();
        return Long.parseLong(out[0]) * Long.parseLong(out[1]);
    }
}
