package org.blksnap.engine.module;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;
import static org.blksnap.engine.Errnos.errnoOf;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicReference;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.CbtInfo;
import org.blksnap.engine.EngineListener;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ImageInfo;
import org.blksnap.engine.Params;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Status;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.device.NativeIo;
import org.blksnap.engine.tracker.TrackedDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class EngineTest {
    private static final long MiB = 1 << 20;

    @TempDir
    Path dir;
    Blksnap engine;

    @BeforeEach
    void up() throws Exception {
        Params p = new Params();
        p.set("diff_storage_minimum", 8192);
        engine = BlksnapModule.init(p);
        engine.addDevice("d0", BlockDevices.open(dir.resolve("d0.img"), 16 * MiB, false));
        engine.addDevice("d1", BlockDevices.open(dir.resolve("d1.img"), 8 * MiB, false));
    }

    @AfterEach
    void down() {
        engine.close();
    }


    private static ByteBuffer pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (seed * 31 + i * 7);
        }
        return ByteBuffer.wrap(b);
    }

    private static byte[] read(BlockDevice d, long offset, int length) throws Exception {
        ByteBuffer b = ByteBuffer.allocate(length);
        d.read(b, offset);
        return b.array();
    }

    private UUID takenSnapshot(String... devices) {
        UUID id = engine.snapshotCreate(List.of(devices));
        engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff-" + id), 16 * MiB));
        engine.snapshotTake(id, TakeHooks.NONE);
        return id;
    }

    @Test
    void versionIsOneZeroZeroZero() {
        assertThat(engine.version().toString()).isEqualTo("1.0.0.0");
    }

    @Test
    void theImageShowsTheDeviceAsAtTakeWhileTheOriginalMovesOn() throws Exception {
        BlockDevice d0 = engine.device("d0");
        d0.write(pattern((int) MiB, 1), 0);
        UUID id = takenSnapshot("d0");
        d0.write(pattern(4096, 2), 300_000);
        d0.write(pattern((int) MiB, 3), 5 * MiB);
        BlockDevice img = engine.image("blksnap-image0");
        assertThat(read(img, 0, (int) MiB)).isEqualTo(pattern((int) MiB, 1).array());
        assertThat(read(img, 5 * MiB, (int) MiB)).containsOnly(0);
        assertThat(read(d0, 300_000, 4096)).isEqualTo(pattern(4096, 2).array());
        engine.snapshotDestroy(id);
        assertThat(errnoOf(() -> img.read(ByteBuffer.allocate(512), 0))).isEqualTo(Errno.ENODEV);
    }

    @Test
    void imageWritesLandInTheStorageNeverOnTheOriginalAndMarkCbt() throws Exception {
        BlockDevice d0 = engine.device("d0");
        d0.write(pattern((int) MiB, 1), 0);
        UUID id = takenSnapshot("d0");
        BlockDevice img = engine.image(engine.snapshotCollectImages(id).get(0).image());
        img.write(pattern(2048, 9), 126 * 1024);
        assertThat(read(img, 126 * 1024, 2048)).isEqualTo(pattern(2048, 9).array());
        assertThat(read(d0, 126 * 1024, 2048)).isEqualTo(Arrays.copyOfRange(pattern((int) MiB, 1).array(), 126 * 1024, 128 * 1024));
        byte[] map = engine.trackerReadCbtMap("d0", 0, 4);
        assertThat(map[1]).as("image write marks the read map with the snapshot number").isEqualTo((byte) 1);
    }

    @Test
    void takeIsCoherentAcrossDevicesAndCreatesImagesWithTheLowestFreeNumbers() throws Exception {
        List<String> created = new ArrayList<>();
        engine.addListener(new EngineListener() {
            @Override
            public void imageCreated(ImageInfo image) {
                created.add(image.image() + "=" + image.device());
            }
        });
        UUID a = takenSnapshot("d0");
        UUID b = takenSnapshot("d1");
        assertThat(created).containsExactly("blksnap-image0=d0", "blksnap-image1=d1");
        engine.snapshotDestroy(a);
        engine.addDevice("d2", BlockDevices.open(dir.resolve("d2.img"), 4 * MiB, false));
        takenSnapshot("d2");
        assertThat(created).last().isEqualTo("blksnap-image0=d2");
        assertThat(engine.snapshotCollect()).hasSize(2).contains(b);
    }

    @Test
    void wrongOrderCallsFailWithTheSpecsErrors() {
        UUID unknown = UUID.randomUUID();
        assertThat(errnoOf(() -> engine.snapshotTake(unknown, TakeHooks.NONE))).isEqualTo(Errno.ESRCH);
        assertThat(errnoOf(() -> engine.snapshotAppendStorage(unknown, StorageSpec.whole(dir)))).isEqualTo(Errno.ESRCH);
        assertThat(errnoOf(() -> engine.snapshotWaitEvent(unknown, 0))).isEqualTo(Errno.ESRCH);
        assertThat(errnoOf(() -> engine.snapshotCollectImages(unknown))).isEqualTo(Errno.ESRCH);
        assertThat(errnoOf(() -> engine.snapshotDestroy(unknown))).isEqualTo(Errno.ENODEV);
        assertThat(errnoOf(() -> engine.snapshotCreate(List.of("d0", "d0")))).isEqualTo(Errno.EINVAL);
        assertThat(errnoOf(() -> engine.snapshotCreate(List.of()))).isEqualTo(Errno.EINVAL);
        assertThat(errnoOf(() -> engine.snapshotCreate(List.of("nope")))).isEqualTo(Errno.ENXIO);
        assertThat(errnoOf(() -> engine.trackerRemove("d0"))).isEqualTo(Errno.ENODATA);
        assertThat(errnoOf(() -> engine.trackerMarkDirty("d0", List.of(new SectorRange(0, 1))))).isEqualTo(Errno.ENODEV);
        assertThat(errnoOf(() -> engine.trackerReadCbtMap("d0", 0, 1))).isEqualTo(Errno.ENODATA);

        UUID id = engine.snapshotCreate(List.of("d0"));
        assertThat(errnoOf(() -> engine.snapshotCollectImages(id))).isEqualTo(Errno.ENODEV);
        assertThat(errnoOf(() -> engine.trackerReadCbtMap("d0", 0, 1))).isEqualTo(Errno.EPERM);
        assertThat(errnoOf(() -> engine.trackerRemove("d0"))).as("v1 allowed this; fixed").isEqualTo(Errno.EBUSY);
        assertThat(errnoOf(() -> engine.snapshotCreate(List.of("d1", "d0")))).isEqualTo(Errno.EBUSY);
        assertThat(engine.trackerCollect()).extracting(CbtInfo::device).containsExactly("d0");
        assertThat(errnoOf(() -> engine.snapshotTake(id, TakeHooks.NONE))).isEqualTo(Errno.EFAULT);
        assertThat(engine.snapshotCollect()).as("a take without storage destroys the snapshot").doesNotContain(id);

        UUID id2 = takenSnapshot("d0");
        assertThat(errnoOf(() -> engine.snapshotTake(id2, TakeHooks.NONE))).isEqualTo(Errno.EALREADY);
        assertThat(errnoOf(() -> engine.trackerRemove("d0"))).isEqualTo(Errno.EBUSY);
        engine.snapshotDestroy(id2);
        assertThat(errnoOf(() -> engine.snapshotWaitEvent(id2, 0))).isEqualTo(Errno.ESRCH);
        engine.trackerRemove("d0");
        assertThat(engine.trackerCollect()).isEmpty();
    }

    @Test
    void trackersStayAttachedAfterDestroyAndSnapNumbersAdvanceInOneGeneration() throws Exception {
        UUID gen = null;
        for (int cycle = 1; cycle <= 3; cycle++) {
            UUID id = takenSnapshot("d0");
            CbtInfo info = engine.cbtInfo("d0");
            assertThat(info.snapNumber()).isEqualTo(cycle);
            if (gen == null) {
                gen = info.generationId();
            }
            assertThat(info.generationId()).isEqualTo(gen);
            engine.device("d0").write(pattern(4096, cycle), cycle * MiB);
            engine.snapshotDestroy(id);
        }
        UUID id = takenSnapshot("d0");
        byte[] map = engine.trackerReadCbtMap("d0", 0, 256);
        assertThat(map[16]).isEqualTo((byte) 2);
        assertThat(map[32]).isEqualTo((byte) 3);
        assertThat(map[48]).isEqualTo((byte) 4);
        assertThat(map[0]).isZero();
        engine.snapshotDestroy(id);
    }

    @Test
    void takeRunsTheHooksAroundABarrierThatHoldsWritesBack() {
        UUID id = engine.snapshotCreate(List.of("d0", "d1"));
        engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff"), 4 * MiB));
        List<String> calls = new ArrayList<>();
        engine.snapshotTake(id, new TakeHooks() {
            @Override
            public void beforeBarrier() {
                calls.add("freeze");
            }

            @Override
            public void afterBarrier() {
                calls.add("thaw");
            }
        });
        assertThat(calls).containsExactly("freeze", "thaw");
    }

    @Test
    void aFailingFreezeHookLeavesTheSnapshotCreatedAndStillThaws() {
        UUID id = engine.snapshotCreate(List.of("d0"));
        engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff"), 4 * MiB));
        AtomicReference<String> thawed = new AtomicReference<>();
        assertThatThrownBy(() -> engine.snapshotTake(id, new TakeHooks() {
            @Override
            public void beforeBarrier() throws Exception {
                throw new java.io.IOException("fsfreeze: /mnt: not mounted");
            }

            @Override
            public void afterBarrier() {
                thawed.set("yes");
            }
        })).hasMessageContaining("freeze hook failed").hasMessageContaining("not mounted");
        assertThat(thawed.get()).isEqualTo("yes");
        assertThat(errnoOf(() -> engine.snapshotCollectImages(id))).isEqualTo(Errno.ENODEV);
        engine.snapshotTake(id, TakeHooks.NONE);
        assertThat(engine.snapshotCollectImages(id)).hasSize(1);
    }

    @Test
    void destroyWakesAWaiterWithEsrch() throws Exception {
        UUID id = engine.snapshotCreate(List.of("d0"));
        assertThat(engine.snapshotWaitEvent(id, 100)).isInstanceOfSatisfying(SnapshotEvent.LowFreeSpace.class,
                e -> assertThat(e.requestedSectors()).isEqualTo(8192));
        AtomicReference<Errno> got = new AtomicReference<>();
        Thread w = Thread.ofVirtual().start(() -> got.set(errnoOf(() -> engine.snapshotWaitEvent(id, 60_000))));
        // A wait that began after the destroy would fail with ESRCH too: make sure this one is waiting.
        await("waiter inside the wait").atMost(Duration.ofSeconds(10)).until(() -> w.getState() == Thread.State.TIMED_WAITING);
        engine.snapshotDestroy(id);
        assertThat(w.join(Duration.ofSeconds(10))).as("woken by the destroy, not by its 60 s timeout").isTrue();
        assertThat(got.get()).isEqualTo(Errno.ESRCH);
    }

    @Test
    void removingADeviceInATakenSnapshotCorruptsTheSnapshotWithAnEvent() throws Exception {
        UUID id = takenSnapshot("d0", "d1");
        engine.snapshotWaitEvent(id, 0);
        engine.removeDevice("d1", true);
        assertThat(engine.snapshotWaitEvent(id, 100)).isInstanceOfSatisfying(SnapshotEvent.Corrupted.class, c -> {
            assertThat(c.device()).isEqualTo("d1");
            assertThat(c.errno()).isEqualTo(19);
        });
        assertThat(engine.deviceNames()).containsExactly("d0");
        BlockDevice img0 = engine.image("blksnap-image0");
        assertThat(errnoOf(() -> img0.read(ByteBuffer.allocate(512), 0))).isEqualTo(Errno.EIO);
        engine.device("d0").write(pattern(512, 1), 0);
        engine.snapshotDestroy(id);
    }

    @Test
    void removingADeviceInASnapshotWithoutForceIsEbusyAndChangesNothing() throws Exception {
        UUID created = engine.snapshotCreate(List.of("d1"));
        assertThat(errnoOf(() -> engine.removeDevice("d1", false))).as("in a created snapshot").isEqualTo(Errno.EBUSY);
        engine.snapshotAppendStorage(created, StorageSpec.create(dir.resolve("diff-c"), 16 * MiB));
        engine.snapshotTake(created, TakeHooks.NONE);
        engine.snapshotWaitEvent(created, 0);
        assertThat(errnoOf(() -> engine.removeDevice("d1", false))).as("in a taken snapshot").isEqualTo(Errno.EBUSY);
        assertThat(engine.deviceNames()).containsExactly("d0", "d1");
        engine.device("d1").write(pattern(512, 3), 0);
        assertThat(read(engine.device("d1"), 0, 512)).isEqualTo(pattern(512, 3).array());
        assertThat(engine.cbtInfo("d1").snapNumber()).isEqualTo(1);
        assertThat(errnoOf(() -> engine.snapshotWaitEvent(created, 50))).as("no event").isEqualTo(Errno.ENOENT);
        assertThat(read(engine.image("blksnap-image0"), 0, 512)).as("the image is intact").isEqualTo(new byte[512]);
        engine.snapshotDestroy(created);
        engine.removeDevice("d1", false);
        assertThat(engine.deviceNames()).containsExactly("d0");
        assertThat(errnoOf(() -> engine.removeDevice("d1", false))).isEqualTo(Errno.ENXIO);
    }

    @Test
    void listenersHearOfARemovedDeviceBeforeItsBackingIsClosedAndItsIoFailsWithEnodevAlready() throws Exception {
        BlockDevice d1 = engine.device("d1");
        AtomicReference<String> seen = new AtomicReference<>();
        engine.addListener(new EngineListener() {
            @Override
            public void deviceRemoved(String deviceName) {
                // A server drains its requests in flight here: new I/O fails, the backing is still open.
                Errno io = errnoOf(() -> d1.read(ByteBuffer.allocate(512), 0));
                String backing;
                try {
                    backing = read(((TrackedDevice) d1).backing(), 0, 512).length + " bytes";
                } catch (Exception e) {
                    backing = e.toString();
                }
                seen.set(deviceName + " " + io + " " + engine.deviceNames() + " backing read " + backing);
            }
        });
        engine.removeDevice("d1", false);
        assertThat(seen.get()).isEqualTo("d1 ENODEV [d0] backing read 512 bytes");
        assertThat(errnoOf(() -> d1.read(ByteBuffer.allocate(512), 0))).isEqualTo(Errno.ENODEV);
        assertThatThrownBy(() -> read(((TrackedDevice) d1).backing(), 0, 512)).as("closed after the listeners")
                .isInstanceOf(java.io.IOException.class).hasCauseInstanceOf(java.nio.channels.ClosedChannelException.class);
        // the name is free again: the same file can be served anew, with a fresh device
        engine.addDevice("d1", BlockDevices.open(dir.resolve("d1.img"), 0, false));
        assertThat(engine.deviceNames()).containsExactly("d0", "d1");
    }

    @Test
    void statusShowsParamsDevicesTrackersAndSnapshots() throws Exception {
        UUID id = takenSnapshot("d0");
        engine.device("d0").write(pattern(4096, 1), 0);
        Status s = engine.status();
        assertThat(s.version()).isEqualTo("1.0.0.0");
        assertThat(s.params()).containsEntry("diff_storage_minimum", 8192L);
        assertThat(s.devices()).extracting(Status.DeviceStatus::name).containsExactly("d0", "d1");
        assertThat(s.devices().get(0).snapshotId()).isEqualTo(id);
        assertThat(s.devices().get(1).tracker()).isNull();
        Status.SnapshotStatus ss = s.snapshots().get(0);
        assertThat(ss.state()).isEqualTo("taken");
        assertThat(ss.images()).extracting(ImageInfo::image).containsExactly("blksnap-image0");
        assertThat(ss.capacitySectors()).isEqualTo(16 * MiB / 512);
        assertThat(ss.usedSectors()).isEqualTo(512);
        assertThat(ss.chunksCopied()).isEqualTo(1);
        assertThat(ss.pendingEvents()).isEqualTo(1);
    }

    @Test
    void exitDestroysSnapshotsDetachesTrackersAndRefusesFurtherCalls() {
        UUID id = takenSnapshot("d0");
        List<String> removed = new ArrayList<>();
        engine.addListener(new EngineListener() {
            @Override
            public void imageRemoved(ImageInfo image) {
                removed.add(image.image());
            }
        });
        engine.close();
        assertThat(removed).containsExactly("blksnap-image0");
        assertThat(errnoOf(() -> engine.snapshotCollect())).isEqualTo(Errno.ESHUTDOWN);
        assertThat(errnoOf(() -> engine.snapshotDestroy(id))).isEqualTo(Errno.ESHUTDOWN);
        engine.close();
    }

    @Test
    void aFailedInitStepUndoesTheStepsAlreadyUp() {
        for (String step : BlksnapEngine.STEPS) {
            AtomicReference<BlksnapEngine> made = new AtomicReference<>();
            assertThatThrownBy(() -> made.set(new BlksnapEngine(new Params(), NativeIo.system(), step)))
                    .hasMessageContaining("init step " + step + " failed");
            assertThat(made.get()).isNull();
        }
        BlksnapEngine ok = new BlksnapEngine(new Params(), NativeIo.system(), null);
        assertThat(ok.stepsUp()).containsExactlyElementsOf(BlksnapEngine.STEPS);
        ok.close();
        assertThat(ok.stepsUp()).isEmpty();
    }

    @Test
    void aSnapshotsStorageFileCannotBackADeviceWhileTheSnapshotExists() throws Exception {
        UUID id = takenSnapshot("d0");
        Path storage = dir.resolve("diff-" + id);
        Path link = dir.resolve("link-to-storage");
        Files.createLink(link, storage);
        for (Path p : List.of(storage, link)) {
            BlockDevice dev = BlockDevices.open(p, 0, false);
            try {
                assertThatThrownBy(() -> engine.addDevice("d9", dev)).as(p.toString())
                        .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.EBUSY))
                        .hasMessageContaining("is difference storage of snapshot " + id);
            } finally {
                dev.close();
            }
        }
        assertThat(engine.status().devices()).extracting(d -> d.name()).doesNotContain("d9");
        engine.snapshotDestroy(id);
        BlockDevice dev = BlockDevices.open(storage, 0, false);
        engine.addDevice("d9", dev);
        assertThat(engine.status().devices()).extracting(d -> d.name()).contains("d9");
    }

    @Test
    void deviceNamesAreValidated() throws Exception {
        BlockDevice dev = BlockDevices.open(dir.resolve("x.img"), MiB, false);
        assertThat(errnoOf(() -> engine.addDevice("d0", dev))).isEqualTo(Errno.EEXIST);
        assertThat(errnoOf(() -> engine.addDevice("blksnap-image7", dev))).isEqualTo(Errno.EINVAL);
        assertThat(errnoOf(() -> engine.addDevice("a/b", dev))).isEqualTo(Errno.EINVAL);
        dev.close();
    }
}
