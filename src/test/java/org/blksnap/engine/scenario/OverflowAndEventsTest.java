package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.blksnap.engine.scenario.Io.KiB;
import static org.blksnap.engine.scenario.Io.MiB;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
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
import org.blksnap.engine.module.BlksnapModule;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Overflow of the difference storage (upstream 2000/2100 with the assertions the port guide asks
 * for) and the low_free_space / wait-event contract.
 *
 * <p>Chunks are 64 KiB (128 sectors). Storage is appended in whole chunks, so the test knows
 * exactly which copy-on-write takes the last region.
 */
class OverflowAndEventsTest {
    private static final int CHUNK = 64 * (int) KiB;
    private static final long CHUNK_SECTORS = CHUNK / 512;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private Blksnap engine;

    private Blksnap engine(long diffStorageMinimumSectors) throws Exception {
        Params p = new Params();
        p.set("chunk_minimum_shift", 16);
        p.set("diff_storage_minimum", diffStorageMinimumSectors);
        engine = BlksnapModule.init(p);
        engine.addDevice("d0", BlockDevices.open(dir.resolve("d0.img"), 4 * MiB, false));
        engine.addDevice("d1", BlockDevices.open(dir.resolve("d1.img"), 4 * MiB, false));
        return engine;
    }

    @AfterEach
    void down() {
        if (engine != null) {
            engine.close();
        }
    }

    private static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (seed * 131 + i * 7 + (i >>> 9));
        }
        return b;
    }

    private static String describe(SnapshotEvent e) {
        return switch (e) {
            case SnapshotEvent.LowFreeSpace l -> "low_free_space " + l.requestedSectors();
            case SnapshotEvent.Corrupted c -> "corrupted " + c.device() + " " + c.errno();
            case SnapshotEvent.GenerationReset g -> "generation_reset " + g.device() + " " + g.reason();
        };
    }

    private void appendChunks(UUID id, String file, long chunks) {
        engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve(file), chunks * CHUNK));
    }

    @Test
    void overflowCorruptsEachDeviceWithEnospcWhileEveryOriginalWriteLands() throws Exception {
        engine(2 * CHUNK_SECTORS);
        UUID id = engine.snapshotCreate(List.of("d0", "d1"));
        appendChunks(id, "diff0", 4);
        engine.snapshotTake(id, TakeHooks.NONE);
        List<String> images = engine.snapshotCollectImages(id).stream().map(i -> i.image()).toList();
        BlockDevice d0 = engine.device("d0");
        BlockDevice d1 = engine.device("d1");

        for (int c = 0; c < 6; c++) {
            Io.write(d0, (long) c * CHUNK, pattern(CHUNK, c));
        }
        assertThat(Io.errnoOf(() -> Io.read(engine.image(images.get(1)), 0, 4096)))
                .as("the whole snapshot is unreadable once one device overflowed").isEqualTo(Errno.EIO);
        Io.write(d1, 0, pattern(CHUNK, 100));
        Io.write(d1, 3L * CHUNK + 512, pattern(4096, 101));

        assertThat(Io.drainEvents(engine, id)).map(OverflowAndEventsTest::describe).containsExactly(
                "low_free_space " + 2 * CHUNK_SECTORS,
                "low_free_space " + 2 * CHUNK_SECTORS,
                "corrupted d0 28",
                "corrupted d1 28");
        for (String image : images) {
            BlockDevice img = engine.image(image);
            assertThat(Io.errnoOf(() -> Io.read(img, 0, 4096))).as(image + " read").isEqualTo(Errno.EIO);
            assertThat(Io.errnoOf(() -> Io.read(img, 3 * MiB, 512))).as(image + " read of a chunk never copied")
                    .isEqualTo(Errno.EIO);
            assertThat(Io.errnoOf(() -> Io.write(img, 0, new byte[4096]))).as(image + " write").isEqualTo(Errno.EIO);
        }
        for (int c = 0; c < 6; c++) {
            assertThat(Io.read(d0, (long) c * CHUNK, CHUNK)).as("d0 chunk " + c).isEqualTo(pattern(CHUNK, c));
        }
        assertThat(Io.read(d1, 0, CHUNK)).isEqualTo(pattern(CHUNK, 100));
        assertThat(Io.read(d1, 3L * CHUNK + 512, 4096)).isEqualTo(pattern(4096, 101));

        Status.SnapshotStatus st = engine.status().snapshots().get(0);
        assertThat(st.state()).isEqualTo("corrupted");
        assertThat(st.corruptedErrno()).isEqualTo(28);
        assertThat(st.usedSectors()).isEqualTo(st.capacitySectors()).isEqualTo(4 * CHUNK_SECTORS);
        engine.snapshotDestroy(id);
        assertThat(Io.read(d0, 0, CHUNK)).as("destroy leaves the original alone").isEqualTo(pattern(CHUNK, 0));
    }

    @Test
    void imageWriteThatNeedsARegionWhenTheStorageIsFullFailsWithEioAndCorrupts() throws Exception {
        engine(2 * CHUNK_SECTORS);
        UUID id = engine.snapshotCreate(List.of("d0"));
        appendChunks(id, "diff0", 1);
        engine.snapshotTake(id, TakeHooks.NONE);
        BlockDevice img = engine.image(engine.snapshotCollectImages(id).get(0).image());
        Io.write(img, 0, pattern(4096, 1));
        assertThat(Io.read(img, 0, 4096)).isEqualTo(pattern(4096, 1));

        assertThat(Io.errnoOf(() -> Io.write(img, CHUNK, pattern(4096, 2)))).isEqualTo(Errno.EIO);

        assertThat(Io.drainEvents(engine, id)).map(OverflowAndEventsTest::describe)
                .as("one chunk appended is less than the create-time request, so that request is never answered"
                        + " and no second one comes")
                .containsExactly("low_free_space " + 2 * CHUNK_SECTORS, "corrupted d0 28");
        assertThat(Io.errnoOf(() -> Io.read(img, 0, 4096))).isEqualTo(Errno.EIO);
        assertThat(Io.read(engine.device("d0"), 0, 4096)).as("image writes never reach the original")
                .isEqualTo(new byte[4096]);
    }

    @Test
    void lowFreeSpaceAsksForTheMinimumAtCreateAndAgainWhenFreeSpaceFallsToHalfOfIt() throws Exception {
        long minimum = 8 * CHUNK_SECTORS;
        engine(minimum);
        UUID id = engine.snapshotCreate(List.of("d0"));

        SnapshotEvent first = engine.snapshotWaitEvent(id, 100);
        assertThat(first).isEqualTo(new SnapshotEvent.LowFreeSpace(first.timeNanos(), minimum));
        assertThat(engine.status().snapshots().get(0).requestedSectors()).isEqualTo(minimum);

        appendChunks(id, "diff0", 8);
        engine.snapshotTake(id, TakeHooks.NONE);
        BlockDevice d0 = engine.device("d0");
        for (int c = 0; c < 3; c++) {
            Io.write(d0, (long) c * CHUNK, pattern(512, c));
        }
        assertThat(Io.drainEvents(engine, id)).as("5 of 8 chunks free: above half the minimum").isEmpty();
        Io.write(d0, 3L * CHUNK, pattern(512, 3));
        assertThat(Io.drainEvents(engine, id)).as("4 of 8 chunks free: half the minimum")
                .map(OverflowAndEventsTest::describe).containsExactly("low_free_space " + minimum);
        assertThat(engine.status().snapshots().get(0).requestedSectors()).isEqualTo(8 * CHUNK_SECTORS + minimum);

        Io.write(d0, 4L * CHUNK, pattern(512, 4));
        Io.write(d0, 5L * CHUNK, pattern(512, 5));
        assertThat(Io.drainEvents(engine, id)).as("no second request until an append answers the first").isEmpty();

        appendChunks(id, "diff1", 8);
        assertThat(Io.drainEvents(engine, id)).as("10 of 16 chunks free after the append").isEmpty();
        for (int c = 6; c < 11; c++) {
            Io.write(d0, (long) c * CHUNK, pattern(512, c));
        }
        assertThat(Io.drainEvents(engine, id)).as("5 of 16 chunks free").isEmpty();
        Io.write(d0, 11L * CHUNK, pattern(512, 11));
        assertThat(Io.drainEvents(engine, id)).as("4 of 16 chunks free: the append had cleared the flag")
                .map(OverflowAndEventsTest::describe).containsExactly("low_free_space " + minimum);
        assertThat(engine.status().snapshots().get(0).requestedSectors()).isEqualTo(16 * CHUNK_SECTORS + minimum);
    }

    @Test
    void waitEventTimesOutWithEnoentAfterRealMilliseconds() throws Exception {
        engine(2 * CHUNK_SECTORS);
        UUID id = engine.snapshotCreate(List.of("d0"));
        engine.snapshotWaitEvent(id, 100);
        long t0 = System.nanoTime();
        assertThat(Io.errnoOf(() -> engine.snapshotWaitEvent(id, 200))).isEqualTo(Errno.ENOENT);
        long waitedMillis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
        assertThat(waitedMillis).isBetween(200L, 5_000L);
    }

    @Test
    void destroyWakesAWaiterWhichFailsWithEsrch() throws Exception {
        engine(2 * CHUNK_SECTORS);
        UUID id = engine.snapshotCreate(List.of("d0"));
        engine.snapshotWaitEvent(id, 100);
        Thread[] waiter = new Thread[1];
        CompletableFuture<Errno> result = new CompletableFuture<>();
        waiter[0] = Thread.ofVirtual().start(() -> {
            try {
                engine.snapshotWaitEvent(id, 60_000);
                result.complete(null);
            } catch (BlksnapException e) {
                result.complete(e.errno());
            } catch (Throwable t) {
                result.completeExceptionally(t);
            }
        });
        org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(5))
                .until(() -> waiter[0].getState() == Thread.State.TIMED_WAITING);
        long t0 = System.nanoTime();
        engine.snapshotDestroy(id);
        assertThat(result.get(5, TimeUnit.SECONDS)).isEqualTo(Errno.ESRCH);
        assertThat(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0)).isLessThan(5_000L);
        assertThatThrownBy(() -> engine.snapshotWaitEvent(id, 0)).isInstanceOfSatisfying(BlksnapException.class,
                e -> assertThat(e.errno()).isEqualTo(Errno.ESRCH));
    }

}
