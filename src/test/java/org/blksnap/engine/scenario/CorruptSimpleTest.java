package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.engine.scenario.Io.KiB;
import static org.blksnap.engine.scenario.Io.MiB;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.List;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Params;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Status;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.blksnap.testing.TestSector;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Port of upstream {@code test_corrupt --simple} (one cycle, CRC on): fill the device with test
 * sectors of seq 0, snapshot, check the whole image, rewrite the first three chunks and random
 * blocks of the original with seq 1, check the whole image again. Every image sector must still be
 * the seq-0 sector of its own LBA, and the snapshot must raise no corrupted event.
 *
 * <p>Default chunk size (256 KiB, chunk_minimum_shift 18) on a 32 MiB device, so the writes at 0,
 * 256 KiB and 512 KiB hit the first three chunks exactly as upstream intends.
 */
class CorruptSimpleTest {
    private static final long DEVICE_BYTES = 32 * MiB;
    private static final int CHUNK_BYTES = 256 * (int) KiB;
    private static final int SECTOR = TestSector.SECTOR_BYTES;
    private static final int RANDOM_RANGES = 256;
    private static final int MAX_BLOCKS_PER_RANGE = 32;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    @ParameterizedTest(name = "blksz {0}")
    @ValueSource(ints = {512, 4096})
    void imageKeepsEveryTakeTimeSectorWhileTheOriginalIsRewritten(int blksz) throws Exception {
        Params p = new Params();
        p.set("chunk_minimum_shift", 18);
        p.set("diff_storage_minimum", 16384);
        TestSector.Generator gen = new TestSector.Generator(blksz);
        try (Blksnap engine = BlksnapModule.init(p)) {
            engine.addDevice("d0", BlockDevices.open(dir.resolve("d0.img"), DEVICE_BYTES, false));
            BlockDevice orig = engine.device("d0");
            for (long off = 0; off < DEVICE_BYTES; off += MiB) {
                orig.write(gen.sectors(off / SECTOR, (int) (MiB / SECTOR)), off);
            }

            UUID id = engine.snapshotCreate(List.of("d0"));
            engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff0"), 32 * MiB));
            engine.snapshotTake(id, TakeHooks.NONE);
            BlockDevice img = engine.image(engine.snapshotCollectImages(id).get(0).image());
            int takeSeq = gen.seq();
            long takeTime = gen.time();

            assertThat(checkAll(img, "image after take", takeSeq, takeTime)).isEmpty();

            gen.nextSeq();
            BitSet written = new BitSet();
            writeBlocks(orig, gen, written, 0, 1, blksz);
            writeBlocks(orig, gen, written, 256 * KiB, 2, blksz);
            writeBlocks(orig, gen, written, 512 * KiB, 3, blksz);
            long blocksOnDevice = DEVICE_BYTES / blksz;
            for (int i = 0; i < RANDOM_RANGES; i++) {
                int count = 1 + gen.random().nextInt(MAX_BLOCKS_PER_RANGE);
                long block = gen.random().nextLong(blocksOnDevice - count + 1);
                writeBlocks(orig, gen, written, block * blksz, count, blksz);
            }

            assertThat(checkAll(img, "image after rewrites", takeSeq, takeTime))
                    .as("every image sector is the take-time (seq 0) sector of its own LBA").isEmpty();
            assertThat(checkOriginal(orig, written, gen)).as("the original holds exactly what was written").isEmpty();

            List<SnapshotEvent> events = Io.drainEvents(engine, id);
            assertThat(events).noneMatch(e -> e instanceof SnapshotEvent.Corrupted);
            Status.SnapshotStatus st = engine.status().snapshots().get(0);
            assertThat(st.state()).isEqualTo("taken");
            assertThat(st.chunksCopied()).as("each touched chunk copied exactly once").isEqualTo(chunksTouched(written));
            engine.snapshotDestroy(id);
            assertThat(engine.snapshotCollect()).isEmpty();
        }
    }

    private static void writeBlocks(BlockDevice orig, TestSector.Generator gen, BitSet written, long offsetBytes,
                                    int blocks, int blksz) throws Exception {
        int sectors = blocks * blksz / SECTOR;
        long first = offsetBytes / SECTOR;
        orig.write(gen.sectors(first, sectors), offsetBytes);
        written.set((int) first, (int) first + sectors);
    }

    private static long chunksTouched(BitSet writtenSectors) {
        return writtenSectors.stream().map(s -> s / (CHUNK_BYTES / SECTOR)).distinct().count();
    }

    /** Upstream's full check: every sector no newer than the expected seq/time, at its own LBA. */
    private static List<String> checkAll(BlockDevice dev, String what, int seq, long time) throws Exception {
        TestSector.Failures f = new TestSector.Failures(what);
        for (long off = 0; off < DEVICE_BYTES; off += MiB) {
            ByteBuffer b = Io.readBuffer(dev, off, (int) MiB);
            for (int i = 0; i < MiB / SECTOR; i++) {
                long lba = off / SECTOR + i;
                TestSector.Fault fault = TestSector.check(b, i * SECTOR, lba, seq, time, false);
                if (fault != null) {
                    f.add(lba, fault, TestSector.seqOf(b, i * SECTOR));
                }
            }
        }
        return f.report();
    }

    /** Strict: written sectors hold the last seq, the others seq 0. */
    private static List<String> checkOriginal(BlockDevice dev, BitSet written, TestSector.Generator gen) throws Exception {
        TestSector.Failures f = new TestSector.Failures("original");
        for (long off = 0; off < DEVICE_BYTES; off += MiB) {
            ByteBuffer b = Io.readBuffer(dev, off, (int) MiB);
            for (int i = 0; i < MiB / SECTOR; i++) {
                long lba = off / SECTOR + i;
                int seq = written.get((int) lba) ? gen.seq() : 0;
                TestSector.Fault fault = TestSector.check(b, i * SECTOR, lba, seq, gen.timeOf(seq), true);
                if (fault != null) {
                    f.add(lba, fault, TestSector.seqOf(b, i * SECTOR));
                }
            }
        }
        return f.report();
    }
}
