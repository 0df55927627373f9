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
 * What a take makes durable: for a snapshot of more devices than are done at once
 * ({@link StateStore.Take#PARALLEL_COMMITS}), every device's take record is in its journal when the
 * take returns and a crash before the checkpoints after it land recovers the take from the journal,
 * never under-reporting writes before or after it; the checkpoints land after the take; a device
 * whose record or checkpoint fails is the only one invalidated; and the checkpoint of an idle device
 * leaves its all-zero map pages out of the file (holes) and still restores bit for bit.
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

    /** Takes a snapshot of {@code devices} and destroys it, then waits until the checkpoints after the take landed. */
    void takeAndSettle(Blksnap e, List<String> devices) {
        e.snapshotDestroy(take(e, devices));
        StateStoreAccess.store(e).awaitBackground();
    }

    Path crashCopy(Blksnap e, Path state) throws IOException {
        return StateStoreAccess.crashCopy(dir, e, state);
    }

    /** Makes {@code device}'s checkpoint unwritable (checkpoint.tmp cannot be created where a directory of that name stands). */
    static void blockCheckpoints(Path state, String device) throws IOException {
        Files.createDirectory(state.resolve(StateStore.TRACKERS).resolve(device).resolve(DeviceState.CHECKPOINT + ".tmp"));
    }

    static void unblockCheckpoints(Path state, String device) throws IOException {
        Files.delete(state.resolve(StateStore.TRACKERS).resolve(device).resolve(DeviceState.CHECKPOINT + ".tmp"));
    }

    @Test
    void everyTakeOfAManyDeviceSnapshotIsInTheJournalWhenItReturnsAndRecoversFromIt() throws Exception {
        Path state = dir.resolve("state");
        long size = 64L << 30; // sparse; maps of 1 Mi blocks, marked all over: 2 MiB per checkpoint
        Blksnap e = start(state, DEVICES, size);
        List<String> names = e.deviceNames();
        takeAndSettle(e, names); // take 1 attaches the trackers
        for (int i = 0; i < DEVICES; i++) {
            e.trackerMarkDirty(name(i), List.of(new SectorRange(0, size / SectorRange.SECTOR_BYTES)));
            blockCheckpoints(state, name(i)); // so the checkpoints after take 2 cannot land: recovery needs the journal
        }
        long before = epochOnDisk(state, name(0));
        UUID id = take(e, names); // take 2
        Map<String, CbtInfo> infos = new HashMap<>();
        for (String n : names) { // at once: the take's record must be durable before the take returns
            DeviceState st = StateStoreAccess.state(e, n);
            CbtInfo info = e.cbtInfo(n);
            infos.put(n, info);
            assertThat(st.epoch()).isEqualTo(before + 1);
            assertThat(st.journalContent((int) (st.epoch() & 1))).as("%s: the journal of epoch %d", n, st.epoch())
                    .contains(new JournalDescriptor.Take(st.epoch(), info.snapNumber(), info.snapNumber() + 1,
                            info.generationId().hashCode()));
        }
        StateStoreAccess.store(e).awaitBackground();
        for (String n : names) {
            assertThat(epochOnDisk(state, n)).as("%s: its checkpoint could not be written", n).isEqualTo(before);
        }
        Path crashed = crashCopy(e, state);
        Map<String, byte[]> maps = new HashMap<>();
        for (String n : names) {
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
    void theCheckpointsOfTheNewEpochAreWrittenAfterTheTakeAndRestoreTheSame() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state, DEVICES, 64 * MiB);
        List<String> names = e.deviceNames();
        e.snapshotDestroy(take(e, names));
        for (String n : names) {
            e.device(n).write(ByteBuffer.allocate(4096), 5 * MiB);
        }
        UUID id = take(e, names);
        StateStoreAccess.store(e).awaitBackground();
        Map<String, CbtInfo> infos = new HashMap<>();
        for (String n : names) {
            assertThat(epochOnDisk(state, n)).as("%s: epoch of its checkpoint file", n)
                    .isEqualTo(StateStoreAccess.state(e, n).epoch());
            infos.put(n, e.cbtInfo(n));
        }
        Path crashed = crashCopy(e, state);
        e.snapshotDestroy(id);
        e.close();
        Blksnap again = start(crashed, DEVICES, 64 * MiB);
        for (String n : names) {
            assertThat(again.cbtInfo(n)).as(n).isEqualTo(infos.get(n));
        }
    }

    @Test
    void writesAroundATakeWhoseCheckpointDidNotLandAreNeverUnderReported() throws Exception {
        Path state = dir.resolve("state");
        long size = 256 * MiB;
        Blksnap e = start(state, 1, size);
        String n = name(0);
        takeAndSettle(e, List.of(n)); // take 1: numbers 1/2
        blockCheckpoints(state, n);
        e.device(n).write(ByteBuffer.allocate(4096), 10 * MiB); // epoch of take 1's checkpoint, number 2
        e.snapshotDestroy(take(e, List.of(n))); // take 2, journaled: numbers 2/3
        e.device(n).write(ByteBuffer.allocate(4096), 100 * MiB); // after it: number 3
        StateStoreAccess.store(e).awaitBackground();
        Path crashed = crashCopy(e, state);
        CbtInfo info = e.cbtInfo(n);
        UUID id = take(e, List.of(n)); // take 3 of the engine that did not crash: the exact maps
        byte[] exact = e.trackerReadCbtMap(n, 0, Integer.MAX_VALUE);
        e.snapshotDestroy(id);
        e.close();

        Blksnap again = start(crashed, 1, size);
        assertThat(again.cbtInfo(n)).isEqualTo(info);
        assertThat(again.cbtInfo(n).generationReason()).isEqualTo(GenerationReason.NEW_TRACKER);
        take(again, List.of(n));
        byte[] recovered = again.trackerReadCbtMap(n, 0, Integer.MAX_VALUE);
        assertThat(recovered).hasSameSizeAs(exact);
        int block = info.blockSizeBytes();
        for (int i = 0; i < exact.length; i++) {
            assertThat(Byte.toUnsignedInt(recovered[i])).as("block %d (byte %d)", i, (long) i * block)
                    .isGreaterThanOrEqualTo(Byte.toUnsignedInt(exact[i]));
        }
        assertThat(exact[(int) (10 * MiB / block)]).isEqualTo((byte) 2);
        assertThat(exact[(int) (100 * MiB / block)]).isEqualTo((byte) 3);
        // over-reported only in the journal's regions (1 MiB here) of the two writes
        for (int i = 0; i < exact.length; i++) {
            long at = (long) i * block;
            boolean journaled = at / MiB == 10 || at / MiB == 100;
            if (!journaled) {
                assertThat(recovered[i]).as("block %d", i).isEqualTo(exact[i]);
            }
        }
    }

    @Test
    void aJournaledTakeThatDoesNotFollowTheCheckpointGivesANewGeneration() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state, 1, 16 * MiB);
        String n = name(0);
        takeAndSettle(e, List.of(n));
        blockCheckpoints(state, n);
        takeAndSettle(e, List.of(n)); // journaled, its checkpoint does not land
        long epoch = StateStoreAccess.state(e, n).epoch();
        UUID generation = e.cbtInfo(n).generationId();
        Path crashed = crashCopy(e, state);
        e.close();
        // the record of a take that skipped a number (numbers 5/6 after a checkpoint at 1/2)
        ByteBuffer forged = ByteBuffer.allocate(JournalDescriptor.RECORD_BYTES);
        JournalDescriptor.put(forged, new JournalDescriptor.Take(epoch, 5, 6, generation.hashCode()));
        Files.write(crashed.resolve(StateStore.TRACKERS).resolve(n).resolve("journal." + (epoch & 1)), forged.array());

        Blksnap again = start(crashed, 1, 16 * MiB);
        CbtInfo now = again.cbtInfo(n);
        assertThat(now.generationReason()).isEqualTo(GenerationReason.STATE_CORRUPT);
        assertThat(now.generationDetail()).contains("take of epoch " + epoch).contains("does not follow the checkpoint");
        assertThat(now.generationId()).isNotEqualTo(generation);
    }

    @Test
    void aTakeThatCannotBeJournaledOrCheckpointedInvalidatesOnlyItsDevice() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state, DEVICES, 16 * MiB);
        List<String> names = e.deviceNames();
        takeAndSettle(e, names);
        String noJournal = name(3);
        String noCheckpoint = name(7);
        StateStoreAccess.state(e, noJournal).closeJournalFilesUnderneath(); // its take record cannot be written
        blockCheckpoints(state, noCheckpoint);
        takeAndSettle(e, names); // take 2: noCheckpoint's record is durable, its checkpoint after it fails
        UUID id = take(e, names); // take 3: noCheckpoint's last checkpoint is not durable: a copy, which fails
        Path crashed = crashCopy(e, state);
        Map<String, CbtInfo> infos = new HashMap<>();
        for (String n : names) {
            infos.put(n, e.cbtInfo(n));
        }
        e.snapshotDestroy(id);
        e.close();

        Blksnap again = start(crashed, DEVICES, 16 * MiB);
        for (String n : names) {
            CbtInfo now = again.cbtInfo(n);
            if (n.equals(noJournal) || n.equals(noCheckpoint)) {
                assertThat(now.generationReason()).as(n).isEqualTo(n.equals(noJournal)
                        ? GenerationReason.JOURNAL_FAILED : GenerationReason.CHECKPOINT_FAILED);
                assertThat(now.generationId()).isNotEqualTo(infos.get(n).generationId());
            } else {
                assertThat(now).as(n).isEqualTo(infos.get(n));
                assertThat(now.snapNumber()).isEqualTo(3);
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
        StateStoreAccess.store(e).awaitBackground(); // the checkpoint of the take's epoch
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
