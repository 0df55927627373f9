package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.engine.scenario.Io.MiB;

import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.TreeSet;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Params;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.blksnap.testing.TestSector;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Port of upstream {@code test_diff_storage} (v1), which is also the v1 form of {@code 4000-diff_storage}:
 * the difference storage is made of sector ranges of the original device itself, so copy-on-write
 * data lands on the very device being snapshotted. Each cycle cuts the device at about 20 random
 * page-aligned points; each segment becomes a part the test writes (WR) followed by a part given to
 * the storage (DiffSt). The storage is appended in portions as low-free-space events arrive, as the
 * upstream library hands ranges out. Then 60 random writes go to the WR parts of the original.
 *
 * <p>What must hold: the image shows every WR sector as it was at take (a wrong LBA would reveal
 * copy-on-write data landing outside its region); the original shows every write; no corrupted
 * event; and the engine's own storage writes bypass the tracker, so no tracking block that only
 * the storage wrote is marked in the CBT map (checked through the read map of a probe snapshot).
 * After each cycle the DiffSt parts are written with fresh test sectors again, as upstream does.
 */
class DiffStorageOnOriginalTest {
    private static final long DEVICE_BYTES = 64 * MiB;
    private static final int SECTOR = TestSector.SECTOR_BYTES;
    private static final long DEVICE_SECTORS = DEVICE_BYTES / SECTOR;
    private static final int PAGE_SECTORS = 8;
    private static final int TRACKING_BLOCK_BYTES = 4096;
    private static final long MINIMUM_SECTORS = 4096;
    private static final int CYCLES = 3;
    private static final int CUTS = 20;
    private static final int WRITES = 60;
    private static final int MAX_WRITE_SECTORS = 128;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private final TestSector.Generator gen = new TestSector.Generator(4000);

    @Test
    void copiesLandInRangesOfTheOriginalItselfBypassTheTrackerAndTheImageShowsEveryWrittenSectorAsAtTake()
            throws Exception {
        Params p = new Params();
        p.set("chunk_minimum_shift", 16);
        p.set("tracking_block_minimum_shift", 12);
        p.set("diff_storage_minimum", MINIMUM_SECTORS);
        Path backing = dir.resolve("d0.img");
        try (Blksnap engine = BlksnapModule.init(p)) {
            engine.addDevice("d0", BlockDevices.open(backing, DEVICE_BYTES, false));
            SectorModel orig = new SectorModel("original", engine.device("d0"), new int[(int) DEVICE_SECTORS], gen);
            for (long off = 0; off < DEVICE_BYTES; off += MiB) {
                orig.write(off, MiB);
            }
            orig.check("the whole device after the fill", 0, DEVICE_BYTES);

            for (int cycle = 0; cycle < CYCLES; cycle++) {
                List<SectorRange> wr = new ArrayList<>();
                Deque<SectorRange> diffSt = new ArrayDeque<>();
                cut(wr, diffSt);

                UUID id = engine.snapshotCreate(List.of("d0"));
                appendPortions(engine, id, backing, diffSt, MINIMUM_SECTORS);
                engine.snapshotTake(id, TakeHooks.NONE);
                BlockDevice img = engine.image(engine.snapshotCollectImages(id).get(0).image());
                SectorModel image = orig.copyFor("image", img);

                int grown = 0;
                boolean[] written = new boolean[(int) (DEVICE_BYTES / TRACKING_BLOCK_BYTES)];
                for (int w = 0; w < WRITES; w++) {
                    SectorRange area = wr.get(gen.random().nextInt(wr.size()));
                    long pages = area.sectorCount() / PAGE_SECTORS;
                    long start = area.sectorOffset() + gen.random().nextLong(pages) * PAGE_SECTORS;
                    long count = Math.min(PAGE_SECTORS * (1 + gen.random().nextInt(MAX_WRITE_SECTORS / PAGE_SECTORS)),
                            area.sectorEnd() - start);
                    orig.write(start * SECTOR, count * SECTOR);
                    for (long b = start * SECTOR / TRACKING_BLOCK_BYTES; b * TRACKING_BLOCK_BYTES < (start + count) * SECTOR; b++) {
                        written[(int) b] = true;
                    }
                    for (SnapshotEvent ev : Io.drainEvents(engine, id)) {
                        assertThat(ev).as("cycle %d, write %d", cycle, w).isNotInstanceOf(SnapshotEvent.Corrupted.class);
                        if (ev instanceof SnapshotEvent.LowFreeSpace low) {
                            appendPortions(engine, id, backing, diffSt, low.requestedSectors());
                            grown++;
                        }
                    }
                }

                assertThat(grown).as("cycle %d: copies filled the first portion and the storage grew", cycle).isPositive();
                for (SectorRange area : wr) {
                    image.check("cycle " + cycle + ": WR part on the image", area.offsetBytes(), area.lengthBytes());
                    orig.check("cycle " + cycle + ": WR part on the original", area.offsetBytes(), area.lengthBytes());
                }
                assertThat(Io.drainEvents(engine, id)).noneMatch(ev -> ev instanceof SnapshotEvent.Corrupted);
                engine.snapshotDestroy(id);

                storageWritesNeverMarkedCbt(engine, cycle, written, wr);

                for (SectorRange area : usedAndUnused(wr)) {
                    orig.write(area.offsetBytes(), area.lengthBytes());
                }
                orig.check("cycle " + cycle + ": the whole device after the DiffSt parts were written again", 0, DEVICE_BYTES);
            }
        }
    }

    /** Cuts the device into segments; each gives a WR part and, if longer than 16 sectors, a DiffSt tail. */
    private void cut(List<SectorRange> wr, Deque<SectorRange> diffSt) {
        TreeSet<Long> cuts = new TreeSet<>();
        while (cuts.size() < CUTS) {
            cuts.add((1 + gen.random().nextLong(DEVICE_SECTORS / PAGE_SECTORS - 1)) * PAGE_SECTORS);
        }
        cuts.add(DEVICE_SECTORS);
        long start = 0;
        for (long end : cuts) {
            long len = end - start;
            long tail = 0;
            if (len > 16) {
                // A quarter to a half of the segment, in whole pages, so the storage always has room.
                long quarterPages = len / 4 / PAGE_SECTORS;
                tail = (quarterPages + gen.random().nextLong(quarterPages + 1)) * PAGE_SECTORS;
            }
            if (len - tail > 0) {
                wr.add(new SectorRange(start, len - tail));
            }
            if (tail > 0) {
                diffSt.add(new SectorRange(end - tail, tail));
            }
            start = end;
        }
    }

    /** Appends DiffSt ranges of the device's own backing file until at least {@code sectors} were added. */
    private static void appendPortions(Blksnap engine, UUID id, Path backing, Deque<SectorRange> pending, long sectors) {
        List<SectorRange> portion = new ArrayList<>();
        long added = 0;
        while (added < sectors && !pending.isEmpty()) {
            SectorRange r = pending.poll();
            portion.add(r);
            added += r.sectorCount();
        }
        if (!portion.isEmpty()) {
            engine.snapshotAppendStorage(id, new StorageSpec(backing, 0, false, portion));
        }
    }

    /**
     * Takes a probe snapshot (storage in a separate file) so that the write map of the cycle becomes
     * the read map, and checks it: every block the test wrote carries the cycle's number, and no block
     * outside the WR parts (the storage's, which only the engine wrote) is marked with it.
     */
    private void storageWritesNeverMarkedCbt(Blksnap engine, int cycle, boolean[] written, List<SectorRange> wr)
            throws Exception {
        UUID probe = engine.snapshotCreate(List.of("d0"));
        engine.snapshotAppendStorage(probe, StorageSpec.create(dir.resolve("probe" + cycle), 8 * MiB));
        engine.snapshotTake(probe, TakeHooks.NONE);
        byte[] map = engine.trackerReadCbtMap("d0", 0, written.length);
        int number = -1;
        for (int b = 0; b < written.length; b++) {
            if (written[b]) {
                number = Math.max(number, Byte.toUnsignedInt(map[b]));
            }
        }
        assertThat(number).as("cycle %d: the written blocks are marked", cycle).isPositive();
        boolean[] inWr = new boolean[written.length];
        for (SectorRange area : wr) {
            for (long b = area.offsetBytes() / TRACKING_BLOCK_BYTES; b * TRACKING_BLOCK_BYTES < area.offsetBytes() + area.lengthBytes(); b++) {
                inWr[(int) b] = true;
            }
        }
        assertThat(inWr).as("some blocks hold only storage").contains(false);
        List<Integer> wronglyMarked = new ArrayList<>();
        List<Integer> missed = new ArrayList<>();
        for (int b = 0; b < written.length; b++) {
            int v = Byte.toUnsignedInt(map[b]);
            if (written[b] && v != number) {
                missed.add(b);
            }
            if (!inWr[b] && v == number) {
                wronglyMarked.add(b);
            }
        }
        assertThat(missed).as("cycle %d: written blocks without the cycle's number", cycle).isEmpty();
        assertThat(wronglyMarked).as("cycle %d: storage-only blocks marked as written", cycle).isEmpty();
        engine.snapshotDestroy(probe);
    }

    /** The parts of the device outside the WR parts (the DiffSt parts, used or not). */
    private static List<SectorRange> usedAndUnused(List<SectorRange> wr) {
        List<SectorRange> out = new ArrayList<>();
        long pos = 0;
        for (SectorRange area : wr) {
            if (area.sectorOffset() > pos) {
                out.add(new SectorRange(pos, area.sectorOffset() - pos));
            }
            pos = area.sectorEnd();
        }
        if (pos < DEVICE_SECTORS) {
            out.add(new SectorRange(pos, DEVICE_SECTORS - pos));
        }
        return out;
    }
}
