package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.blksnap.engine.scenario.Io.KiB;
import static org.blksnap.engine.scenario.Io.MiB;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;
import org.blksnap.engine.Params;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Status;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.diff.StorageFaults;
import org.blksnap.engine.module.BlksnapModule;
import org.blksnap.engine.testing.FaultPlan.Op;
import org.blksnap.engine.testing.FaultyDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every I/O error path of copy-on-write and of the snapshot image, through the engine's facade, with
 * a {@link FaultyDevice} as the original and {@link StorageFaults} on the difference storage.
 *
 * <p>What the caller sees, by path: a failed copy-on-write never fails the write to the original (its
 * data lands) but corrupts the snapshot (one {@code corrupted} event per device, errno 5, status
 * {@code corrupted}); after that every image read, write and flush fails with
 * {@link BlksnapException} EIO. An image read whose original or storage read fails gets that
 * {@link IOException} as it is (the NBD server answers NBD_EIO) and corrupts nothing. A failed first
 * image write of a chunk throws the storage's {@link IOException} and corrupts the snapshot.
 *
 * <p>Chunks of 256 KiB; a 4 MiB device of 16 chunks, filled with a known pattern before take.
 */
class IoErrorPathsTest {
    private static final long DEVICE_BYTES = 4 * MiB;
    private static final int CHUNK = 256 * (int) KiB;
    private static final int BLOCK = 4 * (int) KiB;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private Blksnap engine;
    private Path storagePath;
    private final byte[] takeTime = random(1, (int) DEVICE_BYTES);

    @BeforeEach
    void up() {
        Params p = new Params();
        p.set("chunk_minimum_shift", 18);
        p.set("diff_storage_minimum", 4096);
        engine = BlksnapModule.init(p);
        storagePath = dir.resolve("diff0");
    }

    @AfterEach
    void down() {
        StorageFaults.forget(storagePath);
        engine.close();
    }

    // ---- copy-on-write -------------------------------------------------------------------------

    @Test
    void aCopyThatCannotReadTheOriginalCorruptsTheSnapshotButTheWriteLands() throws Exception {
        FaultyDevice d0 = addDevice("d0");
        UUID id = takeSnapshot("d0");
        d0.faults().fail(Op.READ, chunk(1), chunk(2));

        byte[] data = random(2, BLOCK);
        Io.write(engine.device("d0"), chunk(1) + BLOCK, data);

        assertThat(d0.faults().injected(Op.READ)).as("the copy tried to read chunk 1 once").isEqualTo(1);
        assertCorrupted(id, "d0");
        assertThat(snapshotStatus().chunksCopied()).isZero();
        d0.faults().heal();
        assertThat(Io.read(engine.device("d0"), chunk(1) + BLOCK, BLOCK)).as("the write reached the original").isEqualTo(data);
        assertOriginalIsTakeTimeExcept(engine.device("d0"), chunk(1) + BLOCK, data);
        assertImageFailsWithEio("d0");
    }

    @Test
    void aCopyThatCannotWriteTheStorageCorruptsTheSnapshotButTheWriteLands() throws Exception {
        addDevice("d0");
        UUID id = takeSnapshot("d0");
        StorageFaults.of(storagePath).fail(Op.WRITE);

        byte[] data = random(3, 2 * BLOCK);
        Io.write(engine.device("d0"), chunk(2), data);

        assertThat(StorageFaults.of(storagePath).injected(Op.WRITE)).isEqualTo(1);
        assertCorrupted(id, "d0");
        assertThat(snapshotStatus().chunksCopied()).isZero();
        assertOriginalIsTakeTimeExcept(engine.device("d0"), chunk(2), data);
        assertImageFailsWithEio("d0");
    }

    // ---- image reads ---------------------------------------------------------------------------

    @Test
    void anImageReadOfAChunkNotCopiedFailsWithTheOriginalsIoErrorAndCorruptsNothing() throws Exception {
        FaultyDevice d0 = addDevice("d0");
        UUID id = takeSnapshot("d0");
        BlockDevice img = image(id);
        d0.faults().fail(Op.READ, chunk(3), chunk(4));

        assertThatThrownBy(() -> Io.read(img, chunk(3) + BLOCK, BLOCK))
                .isExactlyInstanceOf(IOException.class)
                .hasMessage(dir.resolve("d0.img") + ": injected read fault at offset " + (chunk(3) + BLOCK) + " length " + BLOCK);
        assertThat(Io.read(img, chunk(4), BLOCK)).as("other chunks still read").isEqualTo(takeTime(chunk(4), BLOCK));

        assertIntact(id);
        d0.faults().heal();
        assertThat(Io.read(img, chunk(3) + BLOCK, BLOCK)).isEqualTo(takeTime(chunk(3) + BLOCK, BLOCK));
    }

    @Test
    void anImageReadOfACopiedChunkNeedsNoOriginalAndFailsWithTheStoragesIoErrorWithoutCorrupting() throws Exception {
        Params p = engine.params();
        p.set("chunk_maximum_in_cache", 1); // chunk 5 leaves the cache when chunk 6 is copied: reads go to the storage
        FaultyDevice d0 = addDevice("d0");
        UUID id = takeSnapshot("d0");
        BlockDevice img = image(id);
        Io.write(engine.device("d0"), chunk(5), random(4, BLOCK));
        Io.write(engine.device("d0"), chunk(6), random(5, BLOCK));
        d0.faults().fail(Op.READ);

        assertThat(Io.read(img, chunk(5), BLOCK)).as("served from the storage").isEqualTo(takeTime(chunk(5), BLOCK));
        StorageFaults.of(storagePath).fail(Op.READ);
        assertThatThrownBy(() -> Io.read(img, chunk(5), BLOCK))
                .isExactlyInstanceOf(IOException.class)
                .hasMessageStartingWith("difference storage read of " + storagePath + " at offset 0 length " + BLOCK + " failed: ")
                .hasMessageEndingWith("injected read fault at offset 0 length " + BLOCK);

        assertIntact(id);
        StorageFaults.of(storagePath).heal();
        assertThat(Io.read(img, chunk(5), BLOCK)).isEqualTo(takeTime(chunk(5), BLOCK));
    }

    // ---- image writes --------------------------------------------------------------------------

    @Test
    void aFirstImageWriteOfAChunkThatCannotWriteTheStorageFailsAndCorruptsTheSnapshot() throws Exception {
        addDevice("d0");
        UUID id = takeSnapshot("d0");
        BlockDevice img = image(id);
        StorageFaults.of(storagePath).fail(Op.WRITE);

        assertThatThrownBy(() -> Io.write(img, chunk(4) + BLOCK, random(6, BLOCK)))
                .isExactlyInstanceOf(IOException.class)
                .hasMessageStartingWith("difference storage write of " + storagePath + " at offset 0 length " + CHUNK
                        + " failed: ");

        assertCorrupted(id, "d0");
        assertThat(snapshotStatus().chunksCopied()).isZero();
        assertImageFailsWithEio("d0");
        byte[] data = random(7, BLOCK);
        Io.write(engine.device("d0"), chunk(7), data);
        assertOriginalIsTakeTimeExcept(engine.device("d0"), chunk(7), data);
    }

    @Test
    void anImageWriteToACopiedChunkThatCannotWriteTheStorageFailsWithoutCorrupting() throws Exception {
        addDevice("d0");
        UUID id = takeSnapshot("d0");
        BlockDevice img = image(id);
        byte[] data = random(8, BLOCK);
        Io.write(engine.device("d0"), chunk(8), data);
        StorageFaults.of(storagePath).fail(Op.WRITE);

        assertThatThrownBy(() -> Io.write(img, chunk(8) + BLOCK, random(9, BLOCK)))
                .isExactlyInstanceOf(IOException.class)
                .hasMessageStartingWith("difference storage write of " + storagePath + " at offset " + BLOCK);

        assertIntact(id);
        assertThat(Io.read(img, chunk(8), BLOCK)).isEqualTo(takeTime(chunk(8), BLOCK));
        assertOriginalIsTakeTimeExcept(engine.device("d0"), chunk(8), data);
    }

    // ---- storage failing from the first copy after take -----------------------------------------

    @Test
    void storageUnusableAtTheFirstCopyAfterTakeCorruptsEveryDeviceAndNothingIsCopiedAfterIt() throws Exception {
        addDevice("d0");
        addDevice("d1");
        StorageFaults.of(storagePath).fail(Op.READ).fail(Op.WRITE).fail(Op.FLUSH);
        UUID id = takeSnapshot("d0", "d1");
        assertThat(snapshotStatus().state()).as("take does not touch the storage").isEqualTo("taken");

        byte[] first = random(10, BLOCK);
        Io.write(engine.device("d0"), chunk(0), first);
        assertCorrupted(id, "d0");
        assertThat(Io.errnoOf(() -> image(id, 0).flush())).isEqualTo(Errno.EIO);
        StorageFaults.of(storagePath).heal();

        byte[] second = random(11, BLOCK);
        byte[] other = random(12, BLOCK);
        Io.write(engine.device("d0"), chunk(1), second);
        Io.write(engine.device("d1"), chunk(0), other);

        assertThat(corruptedEvents(id)).as("d1 is corrupted by the snapshot's state, d0 not twice").containsExactly("d1:5");
        Status.SnapshotStatus st = snapshotStatus();
        assertThat(st.chunksCopied()).as("nothing is copied once the snapshot is corrupted").isZero();
        assertThat(st.usedSectors()).as("only the failed copy took a region").isEqualTo(CHUNK / 512);
        assertImageFailsWithEio("d0");
        assertImageFailsWithEio("d1");
        byte[] d0Now = takeTime.clone();
        System.arraycopy(first, 0, d0Now, (int) chunk(0), BLOCK);
        System.arraycopy(second, 0, d0Now, (int) chunk(1), BLOCK);
        assertThat(Arrays.equals(Io.read(engine.device("d0"), 0, (int) DEVICE_BYTES), d0Now)).as("d0 holds both writes").isTrue();
        assertOriginalIsTakeTimeExcept(engine.device("d1"), chunk(0), other);
        engine.snapshotDestroy(id);
        assertThat(engine.snapshotCollect()).isEmpty();
    }

    // ---- helpers ---------------------------------------------------------------------------------

    private FaultyDevice addDevice(String name) throws IOException {
        FaultyDevice d = new FaultyDevice(BlockDevices.open(dir.resolve(name + ".img"), DEVICE_BYTES, false));
        engine.addDevice(name, d);
        Io.write(engine.device(name), 0, takeTime);
        return d;
    }

    /** Creates, appends 8 MiB of storage, takes, and drops the creation's low_free_space event. */
    private UUID takeSnapshot(String... devices) {
        UUID id = engine.snapshotCreate(List.of(devices));
        engine.snapshotAppendStorage(id, StorageSpec.create(storagePath, 8 * MiB));
        engine.snapshotTake(id, TakeHooks.NONE);
        assertThat(Io.drainEvents(engine, id)).allMatch(e -> e instanceof SnapshotEvent.LowFreeSpace);
        return id;
    }

    private BlockDevice image(UUID id) {
        return image(id, 0);
    }

    private BlockDevice image(UUID id, int device) {
        return engine.image(engine.snapshotCollectImages(id).get(device).image());
    }

    private Status.SnapshotStatus snapshotStatus() {
        return engine.status().snapshots().get(0);
    }

    /** The corrupted events queued now, as "device:errno"; fails on any other event. */
    private List<String> corruptedEvents(UUID id) {
        List<SnapshotEvent> events = Io.drainEvents(engine, id);
        assertThat(events).allMatch(e -> e instanceof SnapshotEvent.Corrupted);
        return events.stream().map(e -> (SnapshotEvent.Corrupted) e).map(c -> c.device() + ":" + c.errno()).toList();
    }

    private void assertCorrupted(UUID id, String device) {
        assertThat(corruptedEvents(id)).containsExactly(device + ":5");
        Status.SnapshotStatus st = snapshotStatus();
        assertThat(st.state()).isEqualTo("corrupted");
        assertThat(st.corruptedErrno()).isEqualTo(5);
    }

    private void assertIntact(UUID id) {
        assertThat(Io.drainEvents(engine, id)).as("no event").isEmpty();
        Status.SnapshotStatus st = snapshotStatus();
        assertThat(st.state()).isEqualTo("taken");
        assertThat(st.corruptedErrno()).isZero();
    }

    private void assertImageFailsWithEio(String device) {
        UUID id = engine.snapshotCollect().get(0);
        int i = engine.snapshotCollectImages(id).stream().map(info -> info.device()).toList().indexOf(device);
        BlockDevice img = image(id, i);
        assertThat(Io.errnoOf(() -> Io.read(img, chunk(9), BLOCK))).isEqualTo(Errno.EIO);
        assertThat(Io.errnoOf(() -> Io.write(img, chunk(9), new byte[BLOCK]))).isEqualTo(Errno.EIO);
        assertThat(Io.errnoOf(img::flush)).isEqualTo(Errno.EIO);
    }

    /** The original holds the take-time pattern everywhere but {@code data} at {@code offsetBytes}. */
    private void assertOriginalIsTakeTimeExcept(BlockDevice orig, long offsetBytes, byte[] data) throws IOException {
        byte[] expected = takeTime.clone();
        System.arraycopy(data, 0, expected, (int) offsetBytes, data.length);
        assertThat(Arrays.equals(Io.read(orig, 0, (int) DEVICE_BYTES), expected)).as("original content").isTrue();
    }

    private byte[] takeTime(long offsetBytes, int lengthBytes) {
        return Arrays.copyOfRange(takeTime, (int) offsetBytes, (int) offsetBytes + lengthBytes);
    }

    private static long chunk(int index) {
        return (long) index * CHUNK;
    }

    private static byte[] random(long seed, int lengthBytes) {
        byte[] b = new byte[lengthBytes];
        new SplittableRandom(seed).nextBytes(b);
        return b;
    }
}
