package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.engine.scenario.Io.KiB;
import static org.blksnap.engine.scenario.Io.MiB;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.CbtInfo;
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
 * Writable snapshot images: what is written reads back, never reaches the original, survives later
 * copy-on-write of the same chunk, marks the original's CBT in both maps (v3+ behaviour, chosen by
 * the port), and is byte-exact across chunk borders (upstream 6100-snapimage_write).
 *
 * <p>Default chunk (256 KiB) and tracking block (64 KiB) sizes.
 */
class ImageWriteTest {
    private static final long DEVICE_BYTES = 8 * MiB;
    private static final int CHUNK = 256 * (int) KiB;
    private static final int TRACKING_BLOCK = 64 * (int) KiB;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private Blksnap engine;
    private BlockDevice orig;
    private byte[] before;

    @BeforeEach
    void up() throws Exception {
        Params p = new Params();
        p.set("diff_storage_minimum", 262144);
        engine = BlksnapModule.init(p);
        engine.addDevice("d0", BlockDevices.open(dir.resolve("d0.img"), DEVICE_BYTES, false));
        orig = engine.device("d0");
        before = random(1, (int) DEVICE_BYTES);
        Io.write(orig, 0, before);
    }

    @AfterEach
    void down() {
        engine.close();
    }

    private static byte[] random(long seed, int length) {
        byte[] b = new byte[length];
        new SplittableRandom(seed).nextBytes(b);
        return b;
    }

    private UUID take(String tag) {
        UUID id = engine.snapshotCreate(List.of("d0"));
        engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff-" + tag), 16 * MiB));
        engine.snapshotTake(id, TakeHooks.NONE);
        return id;
    }

    private BlockDevice image(UUID id) {
        return engine.image(engine.snapshotCollectImages(id).get(0).image());
    }

    @Test
    void imageWritesReadBackAndTheOriginalNeverSeesThem() throws Exception {
        UUID id = take("a");
        BlockDevice img = image(id);
        byte[] expected = before.clone();
        long[] offsets = {0, 512, CHUNK - 512, 3L * CHUNK + 4096, DEVICE_BYTES - 4096};
        int[] lengths = {512, 4096, 1024, 70 * 1024, 4096};
        for (int i = 0; i < offsets.length; i++) {
            byte[] data = random(100 + i, lengths[i]);
            Io.write(img, offsets[i], data);
            System.arraycopy(data, 0, expected, (int) offsets[i], data.length);
        }
        assertThat(Io.read(img, 0, (int) DEVICE_BYTES)).isEqualTo(expected);
        assertThat(Io.read(orig, 0, (int) DEVICE_BYTES)).isEqualTo(before);

        byte[] later = random(200, 2 * CHUNK);
        Io.write(orig, 0, later);
        assertThat(Io.read(img, 0, 2 * CHUNK)).as("a write to the original after the image wrote the chunk")
                .isEqualTo(Arrays.copyOf(expected, 2 * CHUNK));
        assertThat(Io.read(orig, 0, 2 * CHUNK)).isEqualTo(later);
        assertThat(Io.drainEvents(engine, id)).noneMatch(e -> e instanceof SnapshotEvent.Corrupted);
        engine.snapshotDestroy(id);
        assertThat(Io.read(orig, 2L * CHUNK, (int) DEVICE_BYTES - 2 * CHUNK))
                .isEqualTo(Arrays.copyOfRange(before, 2 * CHUNK, (int) DEVICE_BYTES));
    }

    @Test
    void imageWritesMarkTheOriginalsCbtInTheCurrentAndTheNextReadMap() throws Exception {
        UUID first = take("1");
        CbtInfo info1 = engine.cbtInfo("d0");
        assertThat(info1.snapNumber()).isEqualTo(1);
        assertThat(info1.blockSizeBytes()).isEqualTo(TRACKING_BLOCK);
        int blocks = info1.blockCount();
        byte[] map1 = engine.trackerReadCbtMap("d0", 0, blocks);
        assertThat(map1).as("written before the tracker was attached: not known").containsOnly(0);

        BlockDevice img = image(first);
        Io.write(img, 5L * TRACKING_BLOCK + 512, new byte[1024]);
        img.writeZeroes(20L * TRACKING_BLOCK - 512, 1024, false);

        byte[] expectedNow = new byte[blocks];
        for (int b : new int[] {5, 19, 20}) {
            expectedNow[b] = 1;
        }
        assertThat(engine.trackerReadCbtMap("d0", 0, blocks)).as("current read map: changed since snapshot 0")
                .isEqualTo(expectedNow);
        engine.snapshotDestroy(first);

        take("2");
        CbtInfo info2 = engine.cbtInfo("d0");
        assertThat(info2.generationId()).isEqualTo(info1.generationId());
        assertThat(info2.snapNumber()).isEqualTo(2);
        byte[] expectedNext = new byte[blocks];
        for (int b : new int[] {5, 19, 20}) {
            expectedNext[b] = 2;
        }
        assertThat(engine.trackerReadCbtMap("d0", 0, blocks)).as("next read map: changed since snapshot 1")
                .isEqualTo(expectedNext);
    }

    /** Upstream 6100: 1 MiB of magic records written in 1 KiB pieces at offsets that cross chunk borders. */
    @Test
    void imageWritesAcrossChunkBordersReadBackByteExact() throws Exception {
        Io.write(orig, 0, new byte[(int) DEVICE_BYTES]);
        UUID id = take("6100");
        BlockDevice img = image(id);
        byte[] magic = magicFile();
        writeInPieces(orig, 0, magic);
        long[] imageOffsets = {126 * KiB, 2174 * KiB, 4222 * KiB};
        for (long off : imageOffsets) {
            writeInPieces(img, off, magic);
        }
        for (long off : imageOffsets) {
            assertThat(Io.read(img, off, magic.length)).as("image at " + off / KiB + " KiB").isEqualTo(magic);
            assertThat(off / CHUNK).isNotEqualTo((off + magic.length - 1) / CHUNK);
        }
        byte[] expectedImage = new byte[(int) DEVICE_BYTES];
        for (long off : imageOffsets) {
            System.arraycopy(magic, 0, expectedImage, (int) off, magic.length);
        }
        assertThat(Io.read(img, 0, (int) DEVICE_BYTES)).as("everything else is the take-time zeros")
                .isEqualTo(expectedImage);
        byte[] expectedOrig = new byte[(int) DEVICE_BYTES];
        System.arraycopy(magic, 0, expectedOrig, 0, magic.length);
        assertThat(Io.read(orig, 0, (int) DEVICE_BYTES)).isEqualTo(expectedOrig);
    }

    private static byte[] magicFile() {
        byte[] out = new byte[(int) MiB];
        SplittableRandom r = new SplittableRandom(6100);
        byte[] head = "BLKSNAP\n".getBytes(StandardCharsets.US_ASCII);
        byte[] body = new byte[504];
        for (int rec = 0; rec < 2048; rec++) {
            System.arraycopy(head, 0, out, rec * 512, 8);
            r.nextBytes(body);
            System.arraycopy(body, 0, out, rec * 512 + 8, 504);
        }
        return out;
    }

    private static void writeInPieces(BlockDevice dev, long offset, byte[] data) throws Exception {
        for (int pos = 0; pos < data.length; pos += 1024) {
            Io.write(dev, offset + pos, Arrays.copyOfRange(data, pos, pos + 1024));
        }
    }
}
