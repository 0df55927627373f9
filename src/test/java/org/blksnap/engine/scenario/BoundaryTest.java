package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.engine.scenario.Io.MiB;

import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Params;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.blksnap.testing.TestSector;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Port of upstream {@code test_boundary}: blocks at the first and last block of a chunk and across
 * a chunk border, written to the original and to the image, must not disturb the rest of the chunk,
 * its neighbours, or the other side (original vs image). Three phases, each in its own snapshot,
 * each on random chunks not used before in that phase, at the real chunk size (256 KiB).
 *
 * <p>Unlike upstream, which checks "no newer than the snapshot", every check here is strict: the
 * test keeps the seq of every sector of the original and of the image, so a sector from a wrong
 * write, a wrong place or a wrong side fails.
 */
class BoundaryTest {
    private static final long DEVICE_BYTES = 32 * MiB;
    private static final int CHUNK_BYTES = 256 * 1024;
    private static final int CHUNKS = (int) (DEVICE_BYTES / CHUNK_BYTES);
    private static final int SECTOR = TestSector.SECTOR_BYTES;
    private static final int ITERATIONS = 24;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private TestSector.Generator gen;
    private Blksnap engine;
    private int blksz;

    /** A model whose writes and checks count in blocks of {@code blksz}. */
    private final class Model {
        final SectorModel sectors;
        final BlockDevice dev;

        Model(SectorModel sectors) {
            this.sectors = sectors;
            this.dev = sectors.dev;
        }

        void write(long offsetBytes, int blocks) throws Exception {
            sectors.write(offsetBytes, (long) blocks * blksz);
        }

        void check(String what, long offsetBytes, long lengthBytes) throws Exception {
            sectors.check(what, offsetBytes, lengthBytes);
        }

        void checkBlock(String what, long blockOffsetBytes) throws Exception {
            check(what, blockOffsetBytes, blksz);
        }
    }

    @ParameterizedTest(name = "blksz {0}")
    @ValueSource(ints = {512, 4096})
    void writesAtChunkBordersStayInsideTheirBlocksOnBothSides(int blksz) throws Exception {
        this.blksz = blksz;
        Params p = new Params();
        p.set("chunk_minimum_shift", 18);
        p.set("diff_storage_minimum", 16384);
        gen = new TestSector.Generator(7 * blksz);
        try (Blksnap e = BlksnapModule.init(p)) {
            engine = e;
            engine.addDevice("d0", BlockDevices.open(dir.resolve("d0.img"), DEVICE_BYTES, false));
            Model orig = new Model(new SectorModel("original", engine.device("d0"), new int[(int) (DEVICE_BYTES / SECTOR)], gen));
            for (long off = 0; off < DEVICE_BYTES; off += MiB) {
                orig.dev.write(gen.sectors(off / SECTOR, (int) (MiB / SECTOR)), off);
            }
            writesToTheOriginal(orig);
            writesToTheImage(orig);
            writesAcrossAChunkBorderOfTheImage(orig);
        }
    }

    private record Session(UUID id, Model image) {
    }

    private Session take(Model orig, String tag) {
        UUID id = engine.snapshotCreate(List.of("d0"));
        engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff-" + tag), 40 * MiB));
        engine.snapshotTake(id, TakeHooks.NONE);
        BlockDevice img = engine.image(engine.snapshotCollectImages(id).get(0).image());
        return new Session(id, new Model(orig.sectors.copyFor("image", img)));
    }

    private void end(Session s) {
        assertThat(Io.drainEvents(engine, s.id())).noneMatch(ev -> ev instanceof SnapshotEvent.Corrupted);
        engine.snapshotDestroy(s.id());
    }

    private int pickChunk(Set<Integer> history, int span) {
        while (true) {
            int x = 1 + gen.random().nextInt(CHUNKS - 1 - span);
            boolean free = true;
            for (int k = 0; k < span; k++) {
                free &= !history.contains(x + k);
            }
            if (free) {
                for (int k = 0; k < span; k++) {
                    history.add(x + k);
                }
                return x;
            }
        }
    }

    private long randomBlockIn(long chunkStart) {
        return chunkStart + (long) gen.random().nextInt(CHUNK_BYTES / blksz) * blksz;
    }

    private void checkImageAround(Model img, long xs) throws Exception {
        img.checkBlock("random block of X", randomBlockIn(xs));
        img.checkBlock("block before X", xs - blksz);
        img.checkBlock("block after X", xs + CHUNK_BYTES);
        img.check("all of X", xs, CHUNK_BYTES);
    }

    /** Phase 1: the first and then the last block of chunk X on the original. */
    private void writesToTheOriginal(Model orig) throws Exception {
        Session s = take(orig, "phase1");
        Set<Integer> history = new HashSet<>();
        for (int it = 0; it < ITERATIONS; it++) {
            long xs = (long) pickChunk(history, 1) * CHUNK_BYTES;
            orig.write(xs, 1);
            orig.check("rest of X after its first block was written", xs + blksz, CHUNK_BYTES - blksz);
            checkImageAround(s.image(), xs);

            orig.write(xs + CHUNK_BYTES - blksz, 1);
            orig.check("middle of X after its last block was written", xs + blksz, CHUNK_BYTES - 2L * blksz);
            checkImageAround(s.image(), xs);

            orig.checkBlock("first block of X", xs);
            orig.checkBlock("last block of X", xs + CHUNK_BYTES - blksz);
        }
        end(s);
    }

    /** Phase 2: the first and then the last block of chunk X on the image. */
    private void writesToTheImage(Model orig) throws Exception {
        Session s = take(orig, "phase2");
        Model img = s.image();
        Set<Integer> history = new HashSet<>();
        for (int it = 0; it < ITERATIONS; it++) {
            long xs = (long) pickChunk(history, 1) * CHUNK_BYTES;
            img.write(xs, 1);
            img.check("rest of X after its first block was written", xs + blksz, CHUNK_BYTES - blksz);
            img.checkBlock("block before X", xs - blksz);
            img.checkBlock("block after X", xs + CHUNK_BYTES);

            img.write(xs + CHUNK_BYTES - blksz, 1);
            img.check("middle of X after its last block was written", xs + blksz, CHUNK_BYTES - 2L * blksz);
            img.checkBlock("block before X", xs - blksz);
            img.checkBlock("block after X", xs + CHUNK_BYTES);

            img.checkBlock("first block of X", xs);
            img.checkBlock("last block of X", xs + CHUNK_BYTES - blksz);
            orig.check("X on the original, untouched by image writes", xs, CHUNK_BYTES);
        }
        end(s);
    }

    /** Phase 3: two blocks straddling the border of chunks X and X+1 on the image. */
    private void writesAcrossAChunkBorderOfTheImage(Model orig) throws Exception {
        Session s = take(orig, "phase3");
        Model img = s.image();
        Set<Integer> history = new HashSet<>();
        for (int it = 0; it < ITERATIONS; it++) {
            long xs = (long) pickChunk(history, 2) * CHUNK_BYTES;
            long border = xs + CHUNK_BYTES;
            img.write(border - blksz, 2);
            img.check("X before the written blocks", xs, CHUNK_BYTES - blksz);
            img.check("X+1 after the written blocks", border + blksz, CHUNK_BYTES - blksz);
            img.check("the two blocks across the border", border - blksz, 2L * blksz);
            img.checkBlock("block before X", xs - blksz);
            img.checkBlock("block after X+1", border + CHUNK_BYTES);
            orig.check("X and X+1 on the original, untouched by image writes", xs, 2L * CHUNK_BYTES);
        }
        end(s);
    }
}
