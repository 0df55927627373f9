package org.blksnap.engine.state;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.TreeSet;
import org.blksnap.testing.Concurrently;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The journal's look-ahead for sequential writers: a pass through the device syncs a few times, not
 * once per region; the window doubles, never exceeds what the stream already recorded in the epoch
 * nor {@link DeviceState#LOOK_AHEAD_BYTES}; an isolated write records only its own regions; a new
 * epoch starts the stream again. What recovery replays is the journal, so the records are what a
 * crash would mark.
 */
class JournalLookAheadTest {
    static final long KiB = 1 << 10;
    static final long MiB = 1 << 20;

    @TempDir
    Path dir;

    private StateStore store(long regionBytes) throws Exception {
        return StateStoreAccess.open(dir.resolve("state"), regionBytes);
    }

    private DeviceState attach(StateStore store, String name, long sizeBytes) throws Exception {
        return StateStoreAccess.attachNew(store, StateStoreAccess.device(dir, name, sizeBytes));
    }

    private static TreeSet<Long> recorded(DeviceState st) throws Exception {
        TreeSet<Long> regions = new TreeSet<>();
        for (JournalDescriptor.Entry e : st.journalRecords((int) (st.epoch() & 1))) {
            if (e.epoch() == st.epoch()) {
                assertThat(regions.add(e.regionIndex())).as("region %d journaled twice", e.regionIndex()).isTrue();
            }
        }
        return regions;
    }

    private static TreeSet<Long> range(long first, long last) {
        TreeSet<Long> s = new TreeSet<>();
        for (long r = first; r <= last; r++) {
            s.add(r);
        }
        return s;
    }

    @Test
    void aSequentialPassSyncsOncePerDoublingOfTheStreamNotOncePerRegion() throws Exception {
        long region = 64 * KiB;
        try (StateStore store = store(region)) {
            DeviceState st = attach(store, "d0", 64 * region);
            long base = st.forces();
            for (long off = 0; off < 64 * region; off += 16 * KiB) {
                st.recordWrite(off, 16 * KiB);
            }
            // syncs at regions 0, 1 (+1 ahead), 3 (+3), 7 (+7), 15 (+15), 31 (+31), 63: 7 instead of 64
            assertThat(st.forces() - base).isEqualTo(7);
            assertThat(recorded(st)).isEqualTo(range(0, 63));
        }
    }

    @Test
    void theWindowNeverExceedsWhatTheStreamWroteInTheEpochAndAnIsolatedWriteRecordsOnlyItself() throws Exception {
        long region = 64 * KiB;
        try (StateStore store = store(region)) {
            DeviceState st = attach(store, "d0", 256 * region);
            for (long r = 0; r <= 9; r++) {
                st.recordWrite(r * region, region);
            }
            // 10 regions written: 0; 1-2; 3-6; 7-14 (7 behind, 7 ahead)
            assertThat(recorded(st)).isEqualTo(range(0, 14));
            st.recordWrite(100 * region + 5, 1);
            assertThat(recorded(st)).as("region 99 is not recorded: no stream, nothing ahead").contains(100L)
                    .doesNotContain(101L).hasSize(16);
            st.recordWrite(101 * region, 2 * region); // 101-102, one region behind it: one ahead
            assertThat(recorded(st)).contains(101L, 102L, 103L).doesNotContain(104L).hasSize(19);
        }
    }

    @Test
    void theWindowStopsAtLookAheadBytes() throws Exception {
        long region = 64 * MiB; // the default: LOOK_AHEAD_BYTES is 8 regions
        long regions = 40;
        try (StateStore store = store(region)) {
            DeviceState st = attach(store, "d0", regions * region); // sparse
            long base = st.forces();
            long ahead = DeviceState.LOOK_AHEAD_BYTES / region;
            assertThat(ahead).isEqualTo(8);
            for (long r = 0; r <= 20; r++) {
                st.recordWrite(r * region + region / 2, 4096);
                TreeSet<Long> rec = recorded(st);
                assertThat(rec.last() - r).as("ahead of region %d", r).isLessThanOrEqualTo(Math.min(ahead, r));
                assertThat(rec).as("nothing skipped").isEqualTo(range(0, rec.last()));
            }
            // 0; 1-2; 3-6; 7-14; 15-23 (8 ahead, not 15)
            assertThat(recorded(st).last()).isEqualTo(23);
            assertThat(st.forces() - base).isEqualTo(5);
        }
    }

    @Test
    void regionsOfAnEarlierEpochAreNoStream() throws Exception {
        long region = 64 * KiB;
        try (StateStore store = store(region)) {
            DeviceState st = attach(store, "d0", 64 * region);
            for (long r = 0; r < 8; r++) {
                st.recordWrite(r * region, region);
            }
            assertThat(st.checkpoint()).isTrue();
            st.recordWrite(8 * region, 1);
            assertThat(recorded(st)).as("a new epoch: regions 0-7 were recorded in the last one")
                    .isEqualTo(range(8, 8));
        }
    }

    @Test
    void concurrentSequentialStreamsNeverReturnBeforeTheirRegionsAreJournaled() throws Exception {
        long region = 64 * KiB;
        int streams = 4;
        long perStream = 64;
        try (StateStore store = store(region)) {
            DeviceState st = attach(store, "d0", streams * perStream * region);
            long epoch = st.epoch();
            Concurrently.onPlatformThreads(streams, s -> {
                long start = s * perStream * region;
                for (long off = start; off < start + perStream * region; off += 32 * KiB) {
                    st.recordWrite(off, 32 * KiB);
                    long r = off / region;
                    assertThat(st.journalRecords((int) (epoch & 1)))
                            .as("write at %d returned before region %d was journaled", off, r)
                            .anyMatch(e -> e.epoch() == epoch && e.regionIndex() == r);
                }
            });
            assertThat(recorded(st)).isEqualTo(range(0, streams * perStream - 1));
            assertThat(st.forces()).as("far fewer syncs than regions").isLessThan(streams * perStream / 4);
        }
    }
}
