package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assumptions.assumeThat;
import static org.blksnap.engine.scenario.Io.MiB;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.testing.CountingSource;
import org.blksnap.engine.Errno;
import org.blksnap.engine.Params;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Writes whose bytes a device's {@link BlockDevice.Receiver} takes straight from their source (an NBD
 * payload read into a mapping of a tmpfs file) go through the same filter as any write: CBT marks
 * them, the snapshot copies what they overwrite before a byte arrives, and a take never sees one
 * half-done.
 */
class ReceiveTest {
    private static final long DEVICE_BYTES = 32 * MiB;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    @BeforeEach
    void onTmpfs() throws IOException {
        assumeThat(Files.getFileStore(dir).type()).as("receivers exist on tmpfs only").isEqualTo("tmpfs");
    }

    private Blksnap engine() {
        Params p = new Params();
        p.set("chunk_minimum_shift", 18);
        return BlksnapModule.init(p);
    }

    /** A device of {@link #DEVICE_BYTES} filled with {@code fill} (data everywhere: a receiver accepts it all). */
    private BlockDevice device(Blksnap e, String name, byte[] fill) throws IOException {
        e.addDevice(name, BlockDevices.open(dir.resolve(name + ".img"), DEVICE_BYTES, false, org.blksnap.engine.device.NativeIo.system(), true));
        BlockDevice d = e.device(name);
        d.write(ByteBuffer.wrap(fill), 0);
        return d;
    }

    private UUID take(Blksnap e, String device, String storage) {
        UUID id = e.snapshotCreate(List.of(device));
        e.snapshotAppendStorage(id, StorageSpec.create(dir.resolve(storage), 48 * MiB));
        e.snapshotTake(id, TakeHooks.NONE);
        return id;
    }

    @Test
    void aReceivedWriteIsCopiedOnWriteForTheSnapshotAndMarkedInTheChangeMap() throws Exception {
        byte[] before = pattern((int) DEVICE_BYTES, 1);
        try (Blksnap e = engine()) {
            BlockDevice d = device(e, "d0", before);
            BlockDevice.Receiver r = d.receiver();
            assertThat(r).as("a tmpfs file's filter has a receiver").isNotNull();
            UUID first = take(e, "d0", "diff1");
            BlockDevice image = e.image(e.snapshotCollectImages(first).get(0).image());

            byte[] after = pattern((int) MiB, 2);
            long at = 4 * MiB + 4096;
            assertThat(r.accepts(at, after.length)).isTrue();
            AtomicInteger calls = new AtomicInteger();
            r.receive(at, after.length, new CountingSource(after, calls));
            assertThat(calls).hasValue(1);
            assertThat(Io.read(d, at, after.length)).isEqualTo(after);
            assertThat(Io.read(image, at - 4096, (int) MiB + 8192)).as("the image keeps what was there")
                    .isEqualTo(Arrays.copyOfRange(before, (int) at - 4096, (int) (at + MiB + 4096)));
            assertThat(Io.drainEvents(e, first)).noneMatch(ev -> ev instanceof SnapshotEvent.Corrupted);
            e.snapshotDestroy(first);

            UUID probe = take(e, "d0", "diff2");
            int block = e.cbtInfo("d0").blockSizeBytes();
            byte[] map = e.trackerReadCbtMap("d0", 0, (int) (DEVICE_BYTES / block));
            int received = Byte.toUnsignedInt(map[(int) (at / block)]);
            assertThat(received).as("the received range is marked in the generation after the first take")
                    .isGreaterThan(Byte.toUnsignedInt(map[(int) (20 * MiB / block)]));
            for (long b = at / block; b * block < at + after.length; b++) {
                assertThat(Byte.toUnsignedInt(map[(int) b])).as("block %d", b).isEqualTo(received);
            }
            e.snapshotDestroy(probe);
        }
    }

    @Test
    void aDeviceThatRefusesDoesSoBeforeItAsksTheSourceForAByte() throws Exception {
        try (Blksnap e = engine()) {
            BlockDevice d = device(e, "d0", pattern((int) DEVICE_BYTES, 3));
            BlockDevice.Receiver r = d.receiver();
            AtomicInteger calls = new AtomicInteger();
            assertThatThrownBy(() -> r.receive(DEVICE_BYTES - 4096, 8192, new CountingSource(new byte[8192], calls)))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("outside");
            e.removeDevice("d0", false);
            assertThat(r.accepts(0, 4096)).as("a removed device accepts nothing").isFalse();
            assertThatThrownBy(() -> r.receive(0, 4096, new CountingSource(new byte[4096], calls)))
                    .isInstanceOfSatisfying(BlksnapException.class, x -> assertThat(x.errno()).isEqualTo(Errno.ENODEV));
            assertThat(calls).as("the source was never asked").hasValue(0);
        }
    }

    @Test
    void aSourceThatFailsHalfWayLeavesPartOfTheWriteButTheSnapshotWhole() throws Exception {
        byte[] before = pattern((int) DEVICE_BYTES, 4);
        try (Blksnap e = engine()) {
            BlockDevice d = device(e, "d0", before);
            UUID id = take(e, "d0", "diff");
            BlockDevice image = e.image(e.snapshotCollectImages(id).get(0).image());
            IOException cut = new IOException("test: the client left");
            byte[] after = pattern((int) MiB, 5);
            // A receiver over one mapping asks once; this source hands half, then fails (the stream
            // ended inside the payload).
            BlockDevice.ByteSource half = dst -> {
                dst.put(after, 0, dst.remaining() / 2);
                throw cut;
            };
            assertThatThrownBy(() -> d.receiver().receive(8 * MiB, after.length, half)).isSameAs(cut);
            assertThat(Io.read(d, 8 * MiB, after.length / 2)).isEqualTo(Arrays.copyOf(after, after.length / 2));
            assertThat(Io.read(image, 8 * MiB, after.length)).as("copied before the first byte arrived")
                    .isEqualTo(Arrays.copyOfRange(before, (int) (8 * MiB), (int) (9 * MiB)));
            assertThat(Io.read(d, 0, 4096)).as("the device goes on").isEqualTo(Arrays.copyOf(before, 4096));
            e.snapshotDestroy(id);
        }
    }

    /**
     * Writers receive whole 64 KiB blocks of one repeated byte, each in two halves with a pause
     * between (bytes still on their way), while snapshots are taken: every image must show each
     * block whole, old or new, never half of each (the take waits for receives under way).
     */
    @Test
    void aTakeNeverSeesAReceiveHalfDone() throws Exception {
        int blockBytes = 64 << 10;
        int writers = 4;
        int blocksPerWriter = 16;
        try (Blksnap e = engine()) {
            BlockDevice d = device(e, "d0", new byte[(int) DEVICE_BYTES]);
            BlockDevice.Receiver r = d.receiver();
            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            AtomicInteger received = new AtomicInteger();
            List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < writers; w++) {
                int writer = w;
                threads.add(Thread.ofPlatform().start(() -> {
                    try {
                        byte value = 1;
                        while (!stop.get()) {
                            int block = ThreadLocalRandom.current().nextInt(blocksPerWriter);
                            long at = (long) (writer * blocksPerWriter + block) * blockBytes;
                            byte v = value++;
                            r.receive(at, blockBytes, dst -> {
                                int n = Math.min(dst.remaining(), blockBytes / 2);
                                for (int i = 0; i < n; i++) {
                                    dst.put(v);
                                }
                                Thread.onSpinWait();
                                Thread.yield();
                                while (dst.hasRemaining()) {
                                    dst.put(v);
                                }
                            });
                            received.incrementAndGet();
                        }
                    } catch (Throwable t) {
                        failure.compareAndSet(null, t);
                    }
                }));
            }
            try {
                for (int round = 0; round < 12; round++) {
                    UUID id = take(e, "d0", "diff" + round);
                    BlockDevice image = e.image(e.snapshotCollectImages(id).get(0).image());
                    byte[] all = Io.read(image, 0, writers * blocksPerWriter * blockBytes);
                    for (int b = 0; b < writers * blocksPerWriter; b++) {
                        byte first = all[b * blockBytes];
                        for (int i = 1; i < blockBytes; i++) {
                            if (all[b * blockBytes + i] != first) {
                                throw new AssertionError("round " + round + ": block " + b + " of the image is torn at byte "
                                        + i + " (" + first + " then " + all[b * blockBytes + i] + ")");
                            }
                        }
                    }
                    assertThat(Io.drainEvents(e, id)).noneMatch(ev -> ev instanceof SnapshotEvent.Corrupted);
                    e.snapshotDestroy(id);
                }
            } finally {
                stop.set(true);
                for (Thread t : threads) {
                    t.join();
                }
            }
            assertThat(failure.get()).isNull();
            assertThat(received.get()).as("writers ran").isPositive();
        }
    }

    private static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        new java.util.Random(seed).nextBytes(b);
        return b;
    }
}
