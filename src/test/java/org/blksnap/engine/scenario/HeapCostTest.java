package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;
import static org.blksnap.engine.scenario.Io.MiB;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.ref.Reference;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.CbtInfo;
import org.blksnap.engine.Params;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * An idle snapshot of a huge device must be cheap: v1 allocated every chunk descriptor at take
 * (about 131 MB for 10 TiB); this engine keeps a bit per chunk and descriptors only for chunks
 * copied. A 10 TiB sparse file, default parameters (so CBT blocks and chunks grow to 8 MiB by the
 * fixed rules), created + storage appended + taken, must add less than 64 MiB of live heap, and
 * still so after a few MiB of copy-on-write.
 */
class HeapCostTest {
    private static final long TiB = 1L << 40;
    private static final long DEVICE_BYTES = 10 * TiB;
    private static final long HEAP_BUDGET = 64 * MiB;

    @TempDir
    Path tmp;

    @TempDir(factory = ShmTempDir.class)
    Path shm;

    @Test
    void snapshotOfATenTebibyteSparseDeviceCostsLessThan64MiBOfHeap() throws Exception {
        Path big = tmp.resolve("big.img");
        try (RandomAccessFile raf = new RandomAccessFile(big.toFile(), "rw")) {
            raf.setLength(DEVICE_BYTES);
        } catch (IOException e) {
            Assumptions.abort("the filesystem of " + tmp + " cannot hold a 10 TiB sparse file: " + e.getMessage());
        }
        Assumptions.assumeTrue(Files.size(big) == DEVICE_BYTES, "sparse file size was not kept");

        warmUp();
        long before = liveHeap();
        Params p = new Params();
        Blksnap engine = BlksnapModule.init(p);
        try {
            engine.addDevice("big", BlockDevices.open(big, 0, false));
            UUID id = engine.snapshotCreate(List.of("big"));
            engine.snapshotAppendStorage(id, StorageSpec.create(shm.resolve("diff0"), 64 * MiB));
            engine.snapshotTake(id, TakeHooks.NONE);
            CbtInfo info = engine.cbtInfo("big");
            assertThat(info.blockSizeBytes()).as("CBT block by the fixed rule").isEqualTo(8 * (int) MiB);
            assertThat(info.blockCount()).isEqualTo(1_310_720);

            long taken = liveHeap() - before;
            assertThat(taken).as("heap of a taken snapshot of 10 TiB: %d KiB (direct %d KiB)", taken / 1024,
                    direct() / 1024).isLessThan(HEAP_BUDGET);

            BlockDevice orig = engine.device("big");
            BlockDevice img = engine.image(engine.snapshotCollectImages(id).get(0).image());
            byte[] data = new byte[(int) MiB];
            Arrays.fill(data, (byte) 0x5a);
            long[] offsets = {0, 3 * TiB + 12345 * 512L, DEVICE_BYTES - 4 * MiB};
            for (long off : offsets) {
                for (int i = 0; i < 2; i++) {
                    Io.write(orig, off + i * MiB, data);
                }
            }
            for (long off : offsets) {
                assertThat(Io.read(img, off, 2 * (int) MiB)).as("image at %d", off).containsOnly(0);
                assertThat(Io.read(orig, off, (int) MiB)).isEqualTo(data);
            }
            long chunk = 8 * MiB;
            long touched = Arrays.stream(offsets).flatMap(o -> java.util.stream.LongStream.of(o / chunk, (o + 2 * MiB - 1) / chunk))
                    .distinct().count();
            assertThat(touched).as("the middle range crosses a chunk border").isEqualTo(4);
            assertThat(engine.status().snapshots().get(0).chunksCopied()).isEqualTo(touched);

            long written = liveHeap() - before;
            assertThat(written).as("heap after 6 MiB of copy-on-write: %d KiB (direct %d KiB)", written / 1024,
                    direct() / 1024).isLessThan(HEAP_BUDGET);
            engine.snapshotDestroy(id);
        } finally {
            Reference.reachabilityFence(engine);
            engine.close();
        }
    }

    /** Loads and JIT-warms the same code paths on a small device, so that only the snapshot is measured. */
    private void warmUp() throws Exception {
        Params p = new Params();
        p.set("diff_storage_minimum", 16384);
        try (Blksnap e = BlksnapModule.init(p)) {
            e.addDevice("w", BlockDevices.open(shm.resolve("warm.img"), 8 * MiB, false));
            UUID id = e.snapshotCreate(List.of("w"));
            e.snapshotAppendStorage(id, StorageSpec.create(shm.resolve("warm-diff"), 8 * MiB));
            e.snapshotTake(id, TakeHooks.NONE);
            Io.write(e.device("w"), 0, new byte[4096]);
            Io.read(e.image(e.snapshotCollectImages(id).get(0).image()), 0, 4096);
            e.status();
            e.cbtInfo("w");
            e.snapshotDestroy(id);
        }
    }

    /**
     * Used heap after full collections: the smallest of a few readings, to shed garbage made meanwhile.
     * Each reading waits until the collectors have counted the cycle {@code System.gc()} asked for.
     */
    private static long liveHeap() {
        long min = Long.MAX_VALUE;
        for (int i = 0; i < 4; i++) {
            long cycles = collections();
            System.gc();
            await("a collection after System.gc()").atMost(Duration.ofSeconds(30)).pollDelay(Duration.ZERO)
                    .pollInterval(Duration.ofMillis(1)).until(() -> collections() > cycles);
            min = Math.min(min, ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed());
        }
        return min;
    }

    private static long collections() {
        return ManagementFactory.getGarbageCollectorMXBeans().stream().mapToLong(GarbageCollectorMXBean::getCollectionCount)
                .sum();
    }

    private static long direct() {
        return ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class).stream()
                .filter(b -> b.getName().equals("direct")).mapToLong(BufferPoolMXBean::getMemoryUsed).sum();
    }
}
