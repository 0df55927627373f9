package org.blksnap.engine.state;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.engine.Errnos.errnoOf;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.function.Consumer;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.CbtInfo;
import org.blksnap.engine.Errno;
import org.blksnap.engine.GenerationReason;
import org.blksnap.engine.Params;
import org.blksnap.engine.Persistence;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Trackers through a restart of the engine: a clean stop brings back the same generation, numbers
 * and maps; a crash (the state directory copied while the engine runs, as kill -9 leaves it) resumes
 * the generation with every journaled region raised; damaged, missing or outdated state gives a new
 * generation with the right reason, never an exception, and no other device is affected.
 */
class StateRecoveryTest {
    static final long MiB = 1 << 20;
    static final int BLOCK = 64 << 10;
    /** 1 MiB regions: 16 tracking blocks each. */
    static final long REGION = MiB;

    @TempDir
    Path dir;
    @RegisterExtension
    final StateStoreAccess.Engines open = new StateStoreAccess.Engines();

    Persistence persistence(Path state) {
        return new Persistence(state, REGION, Duration.ofHours(1));
    }

    /** An engine on state directory {@code state} with d0 (16 MiB) and d1 (8 MiB) from {@link #dir}. */
    Blksnap start(Path state) throws Exception {
        return start(state, new Params());
    }

    Blksnap start(Path state, Params p) throws Exception {
        p.set("diff_storage_minimum", 8192);
        Blksnap e = BlksnapModule.init(p, persistence(state));
        open.add(e);
        e.addDevice("d0", BlockDevices.open(dir.resolve("d0.img"), 16 * MiB, false));
        e.addDevice("d1", BlockDevices.open(dir.resolve("d1.img"), 8 * MiB, false));
        return e;
    }

    /** Create, append storage, take: the snapshot stays held. */
    UUID take(Blksnap e, String... devices) {
        UUID id = e.snapshotCreate(List.of(devices));
        e.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("ds-" + id), 16 * MiB));
        e.snapshotTake(id, TakeHooks.NONE);
        return id;
    }

    /** A full take cycle; returns the read map of {@code device} at that take. */
    byte[] cycle(Blksnap e, String device) {
        UUID id = take(e, device);
        byte[] map = e.trackerReadCbtMap(device, 0, Integer.MAX_VALUE);
        e.snapshotDestroy(id);
        return map;
    }

    static void write(Blksnap e, String device, long offset, int length) throws Exception {
        e.device(device).write(ByteBuffer.allocate(length), offset);
    }

    Path crashCopy(Blksnap e, Path state) throws IOException {
        return StateStoreAccess.crashCopy(dir, e, state);
    }

    Path checkpointOf(Path state, String device) {
        return state.resolve(StateStore.TRACKERS).resolve(device).resolve(DeviceState.CHECKPOINT);
    }

    @Test
    void aCleanRestartKeepsGenerationNumbersAndMapsBitForBit() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        cycle(e, "d0");
        write(e, "d0", 3 * MiB, 4096);
        cycle(e, "d0");
        write(e, "d0", 5 * MiB + 7, 200_000);
        e.trackerMarkDirty("d0", List.of(new SectorRange(12 * 2048, 8)));
        byte[] before = cycle(e, "d0");
        CbtInfo info = e.cbtInfo("d0");
        e.close();

        Blksnap again = start(state);
        assertThat(again.cbtInfo("d0")).isEqualTo(info);
        assertThat(info.snapNumber()).isEqualTo(3);
        assertThat(info.generationReason()).isEqualTo(GenerationReason.NEW_TRACKER);
        assertThat(errnoOf(() -> again.cbtInfo("d1"))).as("d1 was never tracked").isEqualTo(Errno.ENODATA);
        byte[] after = cycle(again, "d0");
        assertThat(after).as("nothing written since: the next read map is the last one").isEqualTo(before);
        assertThat(again.cbtInfo("d0").snapNumber()).isEqualTo(4);
        assertThat(again.cbtInfo("d0").generationId()).isEqualTo(info.generationId());
    }

    @Test
    void afterACrashTheGenerationGoesOnAndEveryJournaledRegionIsRaisedToTheActiveNumber() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        write(e, "d0", 0, 4096);
        byte[] first = cycle(e, "d0"); // S = 1
        write(e, "d0", 2 * MiB + 100_000, 4096);
        write(e, "d0", 9 * MiB + 5, 1);
        CbtInfo info = e.cbtInfo("d0");
        Path crashed = crashCopy(e, state);
        e.close();

        Blksnap again = start(crashed);
        CbtInfo restored = again.cbtInfo("d0");
        assertThat(restored.generationId()).isEqualTo(info.generationId());
        assertThat(restored.snapNumber()).isEqualTo(1);
        byte[] map = cycle(again, "d0");
        for (int b = 0; b < map.length; b++) {
            long region = ((long) b * BLOCK) / REGION;
            int expected = region == 2 || region == 9 ? 2 : first[b];
            assertThat(map[b]).as("block %d", b).isEqualTo((byte) expected);
        }
        assertThat(first).as("the write before the first snapshot was not tracked yet").containsOnly(0);
    }

    @Test
    void afterACrashASequentialWriterOverReportsAtMostItsLookAheadAndNeverUnderReports() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        byte[] first = cycle(e, "d0"); // S = 1, a new epoch
        for (long off = 0; off < 5 * MiB; off += 256 << 10) {
            write(e, "d0", off, 256 << 10); // regions 0-4
        }
        Path crashed = crashCopy(e, state);
        e.close();

        Blksnap again = start(crashed);
        byte[] map = cycle(again, "d0");
        for (int b = 0; b < map.length; b++) {
            long region = ((long) b * BLOCK) / REGION;
            // journaled: 0; 1-2 (one ahead); 3-6 (three ahead): 5 and 6 were never written
            int expected = region <= 6 ? 2 : first[b];
            assertThat(map[b]).as("block %d", b).isEqualTo((byte) expected);
        }
    }

    @Test
    void anAttachedTrackerAndATakeAreDurableWhenTheCallsReturn() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        UUID id = e.snapshotCreate(List.of("d0"));
        Path afterAttach = crashCopy(e, state);
        e.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("ds"), 16 * MiB));
        e.snapshotTake(id, TakeHooks.NONE);
        Path afterTake = crashCopy(e, state);
        CbtInfo info = e.cbtInfo("d0");
        e.snapshotDestroy(id);
        e.close();
        Blksnap attached = start(afterAttach);
        assertThat(attached.cbtInfo("d0").generationId()).isEqualTo(info.generationId());
        assertThat(attached.cbtInfo("d0").snapNumber()).isZero();
        attached.close();
        assertThat(start(afterTake).cbtInfo("d0")).as("a backup tool saw take 1: it must not come back as 0")
                .isEqualTo(info);
        assertThat(info.snapNumber()).isEqualTo(1);
    }

    @Test
    void imageWritesAreJournaledSoACrashKeepsTheirMarks() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        UUID id = take(e, "d0");
        e.image("blksnap-image0").write(ByteBuffer.allocate(4096), 5 * MiB);
        Path crashed = crashCopy(e, state);
        e.snapshotDestroy(id);
        e.close();
        byte[] map = cycle(start(crashed), "d0");
        assertThat(map[80]).as("written through the image after take 1").isEqualTo((byte) 2);
        assertThat(map[79]).isEqualTo((byte) 0);
    }

    @Test
    void markDirtyIsCheckpointedAtOnceSoACrashKeepsIt() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        UUID held = take(e, "d0");
        e.trackerMarkDirty("d0", List.of(new SectorRange(100 * 128, 1)));
        Path crashed = crashCopy(e, state);
        e.snapshotDestroy(held);
        e.close();

        Blksnap again = start(crashed);
        byte[] map = cycle(again, "d0");
        assertThat(map[100]).as("marked after take 1: changed since 1").isEqualTo((byte) 2);
        assertThat(map[99]).isEqualTo((byte) 0);
    }

    private void damagedCheckpointGives(GenerationReason reason, String detail, Consumer<Path> damage) throws Exception {
        Path state = dir.resolve("state-" + UUID.randomUUID());
        Blksnap e = start(state);
        cycle(e, "d0");
        cycle(e, "d1");
        CbtInfo d1 = e.cbtInfo("d1");
        CbtInfo d0 = e.cbtInfo("d0");
        e.close();
        damage.accept(checkpointOf(state, "d0"));

        Blksnap again = start(state);
        CbtInfo now = again.cbtInfo("d0");
        assertThat(now.generationId()).isNotEqualTo(d0.generationId());
        assertThat(now.snapNumber()).isZero();
        assertThat(now.generationReason()).isEqualTo(reason);
        assertThat(now.generationDetail()).contains(detail);
        assertThat(again.cbtInfo("d1")).as("the other device is not affected").isEqualTo(d1);
        // the first snapshot over the device tells a backup tool why; the next one does not again
        UUID id = again.snapshotCreate(List.of("d0"));
        List<SnapshotEvent.GenerationReset> resets = drain(again, id).stream()
                .filter(ev -> ev instanceof SnapshotEvent.GenerationReset).map(ev -> (SnapshotEvent.GenerationReset) ev)
                .toList();
        assertThat(resets).hasSize(1);
        SnapshotEvent.GenerationReset g = resets.getFirst();
        assertThat(List.of(g.device(), g.generationId(), g.reason(), g.detail()))
                .isEqualTo(List.of("d0", now.generationId(), reason, now.generationDetail()));
        again.snapshotDestroy(id);
        UUID next = again.snapshotCreate(List.of("d0"));
        assertThat(drain(again, next)).noneMatch(ev -> ev instanceof SnapshotEvent.GenerationReset);
        again.snapshotDestroy(next);
        // and the new generation is persisted like any other
        again.close();
        assertThat(start(state).cbtInfo("d0")).isEqualTo(now);
    }

    private static List<SnapshotEvent> drain(Blksnap e, UUID id) {
        List<SnapshotEvent> out = new ArrayList<>();
        while (true) {
            Errno errno = errnoOf(() -> out.add(e.snapshotWaitEvent(id, 0)));
            if (errno != null) {
                assertThat(errno).isEqualTo(Errno.ENOENT);
                return out;
            }
        }
    }

    private static void edit(Path p, Consumer<byte[]> change) {
        try {
            byte[] b = Files.readAllBytes(p);
            change.accept(b);
            Files.write(p, b);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static void cut(Path p, long length) {
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(length);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Test
    void aFlippedHeaderByteGivesStateCorrupt() throws Exception {
        damagedCheckpointGives(GenerationReason.STATE_CORRUPT, "header CRC32C mismatch",
                p -> edit(p, b -> b[CheckpointDescriptor.EPOCH_OFFSET + 3] ^= 4));
    }

    @Test
    void aFlippedMapByteGivesStateCorruptNamingThePage() throws Exception {
        damagedCheckpointGives(GenerationReason.STATE_CORRUPT, "page 0 of the read map",
                p -> edit(p, b -> b[b.length - 8 - 256 + 3] ^= 1));
    }

    @Test
    void aTruncatedCheckpointGivesStateCorrupt() throws Exception {
        damagedCheckpointGives(GenerationReason.STATE_CORRUPT, "truncated", p -> cut(p, 150));
        damagedCheckpointGives(GenerationReason.STATE_CORRUPT, "truncated", p -> cut(p, 0));
    }

    @Test
    void anUnknownVersionGivesStateCorrupt() throws Exception {
        damagedCheckpointGives(GenerationReason.STATE_CORRUPT, "unknown version 9",
                p -> edit(p, b -> b[CheckpointDescriptor.VERSION_OFFSET + 1] = 9));
    }

    @Test
    void garbageGivesStateCorrupt() throws Exception {
        damagedCheckpointGives(GenerationReason.STATE_CORRUPT, "bad magic", p -> edit(p, b -> new java.util.Random(1)
                .nextBytes(b)));
    }

    @Test
    void aCheckpointThatIsADirectoryGivesStateCorrupt() throws Exception {
        damagedCheckpointGives(GenerationReason.STATE_CORRUPT, "checkpoint", p -> {
            try {
                Files.delete(p);
                Files.createDirectory(p);
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
    }

    @Test
    void aRestoredMapKeepsItsBlockSizeWhenTheParametersChanged() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        write(e, "d0", 0, 1);
        byte[] before = cycle(e, "d0");
        CbtInfo info = e.cbtInfo("d0");
        e.close();
        Params bigger = new Params();
        bigger.set("tracking_block_minimum_shift", 20);
        Blksnap again = start(state, bigger);
        assertThat(again.cbtInfo("d0")).isEqualTo(info);
        assertThat(info.blockSizeBytes()).isEqualTo(BLOCK);
        assertThat(cycle(again, "d0")).hasSize(before.length).isEqualTo(before);
    }

    @Test
    void aMissingCheckpointGivesStateMissing() throws Exception {
        damagedCheckpointGives(GenerationReason.STATE_MISSING, "not found", p -> {
            try {
                Files.delete(p);
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
    }

    @Test
    void aSizeChangeWhileStoppedGivesSizeChanged() throws Exception {
        damagedCheckpointGives(GenerationReason.SIZE_CHANGED, "saved for 16777216 bytes",
                p -> cut(dir.resolve("d0.img"), 17 * MiB));
        assertThat(Files.size(dir.resolve("d0.img"))).isEqualTo(17 * MiB);
    }

    @Test
    void aBackingFileModifiedWhileStoppedGivesBackingChangedNamingTheField() throws Exception {
        damagedCheckpointGives(GenerationReason.BACKING_CHANGED, "mtime ", p -> {
            try {
                Path img = dir.resolve("d0.img");
                Files.setLastModifiedTime(img, FileTime.fromMillis(Files.getLastModifiedTime(img).toMillis() + 86_400_000L));
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
    }

    @Test
    void aBackingFileReplacedWhileStoppedGivesBackingChangedNamingTheInode() throws Exception {
        damagedCheckpointGives(GenerationReason.BACKING_CHANGED, "st_ino ", p -> {
            try {
                Path img = dir.resolve("d0.img");
                Path other = dir.resolve("d0.new");
                Files.copy(img, other);
                Files.move(other, img, StandardCopyOption.REPLACE_EXISTING);
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
    }

    @Test
    void aTornJournalTailAfterACrashIsIgnoredAndTheRecordsBeforeItCount() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        cycle(e, "d0");
        write(e, "d0", 4 * MiB, 4096);
        CbtInfo info = e.cbtInfo("d0");
        Path crashed = crashCopy(e, state);
        e.close();
        Path trackerDir = crashed.resolve(StateStore.TRACKERS).resolve("d0");
        for (String j : List.of("journal.0", "journal.1")) {
            Files.write(trackerDir.resolve(j), new byte[] {0x42, 0x53, 0x4A, 0x52, 0, 1, 20}, java.nio.file.StandardOpenOption.APPEND);
        }
        Blksnap again = start(crashed);
        assertThat(again.cbtInfo("d0").generationId()).isEqualTo(info.generationId());
        byte[] map = cycle(again, "d0");
        assertThat(map[64]).as("region 4 was journaled").isEqualTo((byte) 2);
    }

    /**
     * What a build from before take records finds after each kind of stop: a crash leaves a running
     * checkpoint of version 2, which that build's reader refuses (so it starts a new generation
     * instead of stopping at a take record in the journal and under-reporting); a clean stop leaves
     * version 1, which it reads (nothing is replayed after a clean stop).
     */
    @Test
    void aCrashLeavesACheckpointOfVersion2AndACleanStopOneOfVersion1() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        cycle(e, "d0");
        write(e, "d0", 4 * MiB, 4096);
        Path crashed = crashCopy(e, state);
        e.close();
        assertThat(checkpointVersion(checkpointOf(crashed, "d0"))).isEqualTo(CheckpointDescriptor.RUNNING_VERSION);
        assertThat(checkpointVersion(checkpointOf(state, "d0"))).isEqualTo(CheckpointDescriptor.VERSION);
        Blksnap again = start(crashed);
        cycle(again, "d0");
        assertThat(checkpointVersion(checkpointOf(crashed, "d0"))).as("after the restart, running again")
                .isEqualTo(CheckpointDescriptor.RUNNING_VERSION);
    }

    private static int checkpointVersion(Path checkpoint) throws IOException {
        return Short.toUnsignedInt(ByteBuffer.wrap(Files.readAllBytes(checkpoint)).getShort(CheckpointDescriptor.VERSION_OFFSET));
    }

    @Test
    void aJournalRecordOfANewerVersionIsRefusedAfterACrashRatherThanDroppingTheRegionsAfterIt() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        cycle(e, "d0");
        cycle(e, "d1");
        write(e, "d0", 4 * MiB, 4096);
        long epoch = StateStoreAccess.state(e, "d0").epoch();
        CbtInfo info = e.cbtInfo("d0");
        CbtInfo other = e.cbtInfo("d1");
        Path crashed = crashCopy(e, state);
        e.close();
        // as a newer blksnapd would leave it: a record of version 3 (magic and CRC right), then a region
        Path journal = crashed.resolve(StateStore.TRACKERS).resolve("d0").resolve("journal." + (epoch & 1));
        ByteBuffer b = ByteBuffer.allocate(2 * JournalDescriptor.RECORD_BYTES);
        JournalDescriptor.put(b, new JournalDescriptor.Entry(epoch, 12, 20));
        JournalDescriptor.put(b, new JournalDescriptor.Entry(epoch, 13, 20));
        b.putShort(JournalDescriptor.VERSION_OFFSET, (short) 3);
        JournalDescriptor.seal(b, 0);
        Files.write(journal, b.array(), StandardOpenOption.APPEND);
        Files.write(state.resolve(StateStore.TRACKERS).resolve("d0").resolve("journal." + (epoch & 1)), b.array(),
                StandardOpenOption.APPEND);

        Blksnap again = start(crashed);
        CbtInfo now = again.cbtInfo("d0");
        assertThat(now.generationReason()).isEqualTo(GenerationReason.STATE_CORRUPT);
        assertThat(now.generationDetail()).contains(journal.toString()).contains("version 3")
                .contains("written by a newer one");
        assertThat(now.generationId()).isNotEqualTo(info.generationId());
        assertThat(again.cbtInfo("d1")).as("the other device").isEqualTo(other);
        again.close();
        // after a clean stop (the engine closed on state) nothing is replayed: the same record changes nothing
        Blksnap afterStop = start(state);
        assertThat(afterStop.cbtInfo("d0")).isEqualTo(info);
    }

    @Test
    void aJournalThatCannotBeWrittenNeverFailsAWriteAndACrashAfterItGivesJournalFailed() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        cycle(e, "d0");
        CbtInfo info = e.cbtInfo("d0");
        StateStoreAccess.state(e, "d0").closeJournalFilesUnderneath();
        write(e, "d0", 6 * MiB, 4096); // must not fail
        write(e, "d0", 7 * MiB, 4096);
        Path crashed = crashCopy(e, state);
        e.close();
        // a crash after the failure: a new generation that says why
        Blksnap afterCrash = start(crashed);
        CbtInfo now = afterCrash.cbtInfo("d0");
        assertThat(now.generationReason()).isEqualTo(GenerationReason.JOURNAL_FAILED);
        assertThat(now.generationDetail()).contains("journal.");
        assertThat(now.generationId()).isNotEqualTo(info.generationId());
        // a clean stop after the failure still saved the exact maps
        Blksnap afterStop = start(state);
        assertThat(afterStop.cbtInfo("d0")).isEqualTo(info);
        byte[] map = cycle(afterStop, "d0");
        assertThat(map[96]).isEqualTo((byte) 2);
        assertThat(map[112]).isEqualTo((byte) 2);
    }

    @Test
    void removingTheTrackerOrTheDeviceDeletesItsState() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        cycle(e, "d0");
        cycle(e, "d1");
        Path d0 = state.resolve(StateStore.TRACKERS).resolve("d0");
        Path d1 = state.resolve(StateStore.TRACKERS).resolve("d1");
        assertThat(d0.resolve(DeviceState.CHECKPOINT)).exists();
        e.trackerRemove("d0");
        assertThat(d0).doesNotExist();
        e.removeDevice("d1", false);
        assertThat(d1).doesNotExist();
        e.close();
        Blksnap again = start(state);
        assertThat(errnoOf(() -> again.cbtInfo("d0"))).isEqualTo(Errno.ENODATA);
        assertThat(errnoOf(() -> again.cbtInfo("d1"))).isEqualTo(Errno.ENODATA);
    }

    @Test
    void storageFilesTheEngineCreatedForSnapshotsLostInACrashGoAtTheNextStartAndTheUsersStay() throws Exception {
        Path state = dir.resolve("state");
        Blksnap e = start(state);
        Path given = dir.resolve("given.img");
        try (RandomAccessFile f = new RandomAccessFile(given.toFile(), "rw")) {
            f.setLength(16 * MiB);
        }
        Path created = dir.resolve("created.img");
        UUID id = e.snapshotCreate(List.of("d0"));
        e.snapshotAppendStorage(id, StorageSpec.whole(given));
        e.snapshotAppendStorage(id, StorageSpec.create(created, 16 * MiB));
        e.snapshotTake(id, TakeHooks.NONE);
        Path crashed = crashCopy(e, state);
        e.snapshotDestroy(id);
        e.close();
        start(crashed).close();
        assertThat(created).as("created by the engine for a snapshot lost in the crash").doesNotExist();
        assertThat(given).as("given by the user").exists();
        // after a clean run the storage files stay (destroy never deletes them)
        Files.createFile(created);
        start(state).close();
        assertThat(created).exists();
    }
}
