package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.engine.Errnos.errnoOf;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Params;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.device.NativeIo;
import org.blksnap.engine.event.EventQueue;
import org.blksnap.engine.scenario.ShmTempDir;
import org.blksnap.engine.testing.FaultPlan.Op;
import org.blksnap.engine.testing.FaultyDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Copy-on-write and its failures, on a 4 MiB original in chunks of 64 KiB (64 chunks). */
class DiffAreaTest {
    private static final long CAPACITY = 4 << 20;
    private static final int CHUNK = 64 << 10;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private FaultyDevice original;
    private Path storagePath;
    private DiffStorage storage;
    private final RecordingOwner owner = new RecordingOwner();
    private DiffArea area;
    private Params params;

    @BeforeEach
    void up() throws IOException {
        original = new FaultyDevice(BlockDevices.open(dir.resolve("orig.img"), CAPACITY, false));
        original.write(ByteBuffer.wrap(DiffFixture.pattern(1, (int) CAPACITY)), 0);
        storagePath = dir.resolve("diff.img").toAbsolutePath();
        storage = new DiffStorage("s", new EventQueue("s"), 64, NativeIo.system());
        storage.append(StorageSpec.create(storagePath, 2 * CAPACITY), p -> false);
        params = new Params(ParamValues.DEFAULTS.with("chunk_minimum_shift", 16));
        area = new DiffArea("d0", original, params.values(), params, storage, owner);
    }

    @AfterEach
    void down() throws IOException {
        StorageFaults.forget(storagePath);
        area.close();
        storage.close();
        original.close();
    }

    @Test
    void theGeometryFollowsTheParametersAtTake() {
        assertThat(area.chunkShift()).isEqualTo(16);
        assertThat(area.chunkSizeBytes()).isEqualTo(CHUNK);
        assertThat(area.chunkCount()).isEqualTo(64);
        assertThat(area.capacityBytes()).isEqualTo(CAPACITY);
        assertThat(area.device()).isEqualTo("d0");
    }

    /**
     * Forbidden: a chunk copied twice; a write let through before its chunks are stored (the image
     * would then show new data).
     */
    @Test
    void concurrentWritesCopyEachTouchedChunkExactlyOnceBeforeTheyProceed() throws Exception {
        byte[] takeTime = DiffFixture.pattern(1, (int) CAPACITY);
        java.util.Set<Long> touched = java.util.concurrent.ConcurrentHashMap.newKeySet();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
            int seed = t;
            ts.add(Thread.ofVirtual().start(() -> {
                java.util.SplittableRandom r = new java.util.SplittableRandom(seed);
                for (int i = 0; i < 100; i++) {
                    long off = r.nextLong(CAPACITY - 8192);
                    area.copyOnWrite(off, 8192);
                    try {
                        original.write(ByteBuffer.wrap(DiffFixture.pattern(seed + 100, 8192)), off);
                    } catch (IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                    for (long c = off / CHUNK; c <= (off + 8191) / CHUNK; c++) {
                        touched.add(c);
                    }
                }
            }));
        }
        for (Thread t : ts) {
            t.join();
        }
        assertThat(area.chunksCopied()).isEqualTo(touched.size());
        assertThat(original.faults().calls(Op.READ)).as("one read of the original per copy").isEqualTo(touched.size());
        assertThat(storage.filledSectors()).isEqualTo((long) touched.size() * CHUNK / 512);
        ByteBuffer image = ByteBuffer.allocate((int) CAPACITY);
        area.imageRead(image, 0);
        assertThat(java.util.Arrays.equals(image.array(), takeTime)).as("the image is the take-time content").isTrue();
        assertThat(owner.reports()).isEmpty();
    }

    /**
     * Forbidden: the owner told while the reporting thread holds any lock (the failed chunk's lock, a
     * monitor): the owner's call-outs (events, logging, other devices) must not run under the
     * diff area's locks. Both failure paths: copy-on-write and a first image write.
     */
    @Test
    void theOwnerIsToldOfAFailedCopyWithNoLockHeld() throws Exception {
        List<String> locksHeld = new java.util.concurrent.CopyOnWriteArrayList<>();
        owner.onReport = () -> locksHeld.add(locksHeldByThisThread());
        StorageFaults.of(storagePath).fail(Op.WRITE);

        RecordingOwner secondOwner = new RecordingOwner();
        secondOwner.onReport = owner.onReport;
        Params params = new Params(ParamValues.DEFAULTS.with("chunk_minimum_shift", 16));
        DiffArea second = new DiffArea("d1", original, params.values(), params, storage, secondOwner);
        // On a thread of its own: the test runner's thread holds its pool worker's lock.
        java.util.concurrent.atomic.AtomicReference<Exception> imageWriteFailure = new java.util.concurrent.atomic.AtomicReference<>();
        Thread t = Thread.ofPlatform().start(() -> {
            area.copyOnWrite(5L * CHUNK + 10, 10);
            try {
                second.imageWrite(ByteBuffer.allocate(10), 0);
            } catch (IOException | RuntimeException e) {
                imageWriteFailure.set(e);
            }
        });
        t.join();
        second.close();

        assertThat(imageWriteFailure.get()).isExactlyInstanceOf(IOException.class);

        assertThat(owner.reports()).containsExactly("d0:EIO");
        assertThat(secondOwner.reports()).containsExactly("d1:EIO");
        assertThat(locksHeld).containsExactly("none", "none");
    }

    /** The ReentrantLocks and monitors the calling (platform) thread holds, or "none". */
    private static String locksHeldByThisThread() {
        java.lang.management.ThreadInfo info = java.lang.management.ManagementFactory.getThreadMXBean()
                .getThreadInfo(new long[] {Thread.currentThread().threadId()}, true, true)[0];
        List<String> held = new ArrayList<>();
        for (var s : info.getLockedSynchronizers()) {
            held.add(s.getClassName());
        }
        for (var m : info.getLockedMonitors()) {
            held.add(m.getClassName());
        }
        return held.isEmpty() ? "none" : String.join(",", held);
    }

    /** Forbidden: more than one report when many writers' copies fail at once. */
    @Test
    void manyFailedCopiesAtOnceTellTheOwnerOnce() throws Exception {
        StorageFaults.of(storagePath).fail(Op.WRITE);
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < 16; t++) {
            long chunk = t;
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    throw new AssertionError(e);
                }
                area.copyOnWrite(chunk * CHUNK, CHUNK);
            }));
        }
        go.countDown();
        for (Thread t : ts) {
            t.join();
        }
        assertThat(owner.reports()).containsExactly("d0:EIO");
        assertThat(area.chunksCopied()).isZero();
    }

    @Test
    void aCorruptedSnapshotStopsCopyingAndCorruptsThisDeviceWithItsErrno() throws IOException {
        owner.snapshotCorruption.set(Errno.ENODEV);
        area.copyOnWrite(0, 10);
        assertThat(area.chunksCopied()).isZero();
        assertThat(original.faults().calls(Op.READ)).isZero();
        assertThat(area.corruption()).isEqualTo(Errno.ENODEV);
        assertThat(owner.reports()).containsExactly("d0:ENODEV");
    }

    @Test
    void aWriteToACopiedChunkCopiesNothingMore() {
        area.copyOnWrite(0, 10);
        area.copyOnWrite(100, CHUNK - 100);
        assertThat(area.chunksCopied()).isEqualTo(1);
        assertThat(original.faults().calls(Op.READ)).isEqualTo(1);
    }

    @Test
    void nothingIsCopiedAfterClose() {
        area.close();
        area.copyOnWrite(0, 10);
        assertThat(area.chunksCopied()).isZero();
        assertThat(errnoOf(() -> area.imageRead(ByteBuffer.allocate(10), 0))).isEqualTo(Errno.ENODEV);
        assertThat(errnoOf(() -> area.imageSend(0, 10, new RecordingSink(10)))).isEqualTo(Errno.ENODEV);
        assertThat(errnoOf(area::flush)).isEqualTo(Errno.ENODEV);
    }

    /**
     * A destroy while a copied chunk's region is being sent closes the storage under the send: the
     * send fails with ENODEV (destroyed), not with the closed channel's error.
     */
    @Test
    void aDestroyDuringAnImageSendFailsItWithEnodev() {
        params.set("chunk_maximum_in_cache", 1);
        area.copyOnWrite(0, 2 * CHUNK); // chunk 1's copy evicts chunk 0 from the cache: it is sent from its region
        RecordingSink destroying = new RecordingSink(CHUNK) {
            @Override
            public void file(java.nio.channels.FileChannel file, long positionBytes, int lengthBytes) {
                area.close();
                storage.close();
                try {
                    file.read(ByteBuffer.allocate(lengthBytes), positionBytes);
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            }
        };
        assertThat(errnoOf(() -> area.imageSend(0, CHUNK, destroying))).isEqualTo(Errno.ENODEV);
    }
}
