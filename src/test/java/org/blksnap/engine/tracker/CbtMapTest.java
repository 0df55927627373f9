package org.blksnap.engine.tracker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.UUID;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.GenerationReason;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.SectorRange;
import org.junit.jupiter.api.Test;

class CbtMapTest {
    private static final long GiB = 1L << 30;
    private static final ParamValues D = ParamValues.DEFAULTS;

    @Test
    void blockSizeFollowsTheFixedRuleNotV1sDoubledExponent() {
        assertThat(CbtMap.create("a", GiB, D).blockSizeBytes()).isEqualTo(64 << 10);
        assertThat(CbtMap.create("a", GiB, D).blockCount()).isEqualTo(16_384);
        assertThat(CbtMap.create("a", 128 * GiB, D).blockCount()).isEqualTo(2_097_152);
        CbtMap m129 = CbtMap.create("a", 129 * GiB, D);
        assertThat(m129.blockSizeBytes()).isEqualTo(128 << 10);
        assertThat(m129.blockCount()).isEqualTo(1_056_768);
        CbtMap m10t = CbtMap.create("a", 10240 * GiB, D);
        assertThat(m10t.blockSizeBytes()).isEqualTo(8 << 20);
        assertThat(m10t.blockCount()).isEqualTo(1_310_720);
    }

    @Test
    void blockSizeIsCappedAt64MiB() {
        ParamValues few = D.with("tracking_block_maximum_count", 1);
        CbtMap m = CbtMap.create("a", 1L << 40, few);
        assertThat(m.blockSizeBytes()).isEqualTo(64 << 20);
        assertThat(m.blockCount()).isEqualTo(16_384);
    }

    @Test
    void aNewMapHasPreviousZeroActiveOneAndARandomGeneration() {
        CbtMap a = CbtMap.create("a", GiB, D);
        CbtMap b = CbtMap.create("b", GiB, D);
        assertThat(a.snapNumber()).isZero();
        assertThat(a.activeNumber()).isEqualTo(1);
        assertThat(a.generationId()).isNotEqualTo(b.generationId());
        assertThat(a.readMap(0, a.blockCount())).containsOnly(0);
    }

    @Test
    void writesMarkEveryTouchedBlockInTheWriteMapOnly() {
        CbtMap m = CbtMap.create("a", GiB, D);
        m.mark(65536 - 1, 2); // straddles blocks 0 and 1
        m.mark(10 * 65536, 1);
        assertThat(m.writeValue(0)).isEqualTo(1);
        assertThat(m.writeValue(1)).isEqualTo(1);
        assertThat(m.writeValue(2)).isZero();
        assertThat(m.writeValue(10)).isEqualTo(1);
        assertThat(m.readValue(0)).isZero();
    }

    @Test
    void takeFreezesTheReadMapWhileWritesContinue() {
        CbtMap m = CbtMap.create("a", GiB, D);
        m.mark(0, 4096);
        m.switchAtTake();
        byte[] atTake = m.readMap(0, m.blockCount());
        assertThat(atTake[0]).isEqualTo((byte) 1);
        assertThat(m.snapNumber()).isEqualTo(1);
        m.mark(5 * 65536, 4096);
        assertThat(m.readMap(0, m.blockCount())).isEqualTo(atTake);
        assertThat(m.writeValue(5)).isEqualTo(2);
        m.switchAtTake();
        assertThat(m.readValue(5)).isEqualTo(2);
        assertThat(m.readValue(0)).isEqualTo(1);
        assertThat(m.snapNumber()).isEqualTo(2);
    }

    @Test
    void theCopyAtASwitchIsOneArrayEqualToBothMaps() {
        CbtMap m = CbtMap.create("a", GiB, D);
        m.mark(0, 4096);
        m.switchAtTake();
        m.mark(3 * 65536, 4096);
        m.switchAtTake();
        CbtMap.Saved full = m.save();
        CbtMap.Saved one = m.saveSwitched();
        assertThat(one.writeMap()).isSameAs(one.readMap()).isEqualTo(full.writeMap()).isEqualTo(full.readMap());
        assertThat(one).usingRecursiveComparison().ignoringFields("writeMap", "readMap").isEqualTo(full);
        m.mark(7 * 65536, 4096);
        assertThat(one.writeMap()[7]).as("a copy: later writes do not reach it").isZero();
    }

    @Test
    void theWrapAt255ZeroesBothMapsReportsZeroAndStartsANewGeneration() {
        CbtMap m = CbtMap.create("a", GiB, D);
        UUID gen = m.generationId();
        for (int i = 1; i <= 254; i++) {
            m.mark(0, 1);
            m.switchAtTake();
            assertThat(m.snapNumber()).isEqualTo(i);
        }
        assertThat(m.generationId()).isEqualTo(gen);
        assertThat(m.readValue(0)).isEqualTo(254);
        m.mark(0, 1);
        assertThat(m.info().generationReason()).isEqualTo(GenerationReason.NEW_TRACKER);
        assertThat(m.switchAtTake()).isTrue();
        assertThat(m.generationId()).isNotEqualTo(gen);
        assertThat(m.info().generationReason()).isEqualTo(GenerationReason.NUMBER_WRAPPED);
        assertThat(m.info().generationDetail()).contains("256");
        assertThat(m.snapNumber()).isZero();
        assertThat(m.activeNumber()).isEqualTo(1);
        assertThat(m.readMap(0, m.blockCount())).containsOnly(0);
        assertThat(m.writeValue(0)).isZero();
        m.mark(0, 1);
        m.switchAtTake();
        assertThat(m.snapNumber()).isEqualTo(1);
        assertThat(m.readValue(0)).isEqualTo(1);
    }

    @Test
    void markDirtySetsTheWriteMapToActiveAndTheReadMapToPrevious() {
        CbtMap m = CbtMap.create("a", GiB, D);
        m.switchAtTake(); // P=1, A=2
        m.markBoth(List.of(new SectorRange(128 * 3, 1)));
        assertThat(m.readValue(3)).isEqualTo(1);
        assertThat(m.writeValue(3)).isEqualTo(2);
        m.switchAtTake();
        assertThat(m.readValue(3)).isEqualTo(2);
    }

    @Test
    void markDirtyPastTheEndFailsWithEinvalKeepsEarlierRangesAndDoesNotCorruptTheMap() {
        CbtMap m = CbtMap.create("a", GiB, D);
        assertThatThrownBy(() -> m.markBoth(List.of(new SectorRange(0, 1), new SectorRange(GiB / 512, 1))))
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.EINVAL));
        assertThat(m.writeValue(0)).isEqualTo(1);
        assertThat(m.isCorrupted()).isFalse();
    }

    @Test
    void aWritePastTheMapFlagsItCorruptedAndTakeRebuildsIt() {
        CbtMap m = CbtMap.create("a", GiB, D);
        assertThat(m.mark(GiB, 512)).isFalse();
        assertThat(m.isCorrupted()).isTrue();
        assertThat(m.needsReset(GiB)).isTrue();
        assertThatThrownBy(() -> m.readMap(0, 1))
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.EFAULT));
        assertThat(CbtMap.create("a", GiB, D).needsReset(2 * GiB)).isTrue();
    }

    @Test
    void readMapHonoursTheOffsetAndBoundsUnlikeV1() {
        CbtMap m = CbtMap.create("a", GiB, D);
        m.mark(100L * 65536, 1);
        m.switchAtTake();
        byte[] part = m.readMap(100, 10);
        assertThat(part).hasSize(10);
        assertThat(part[0]).isEqualTo((byte) 1);
        assertThat(m.readMap(16_380, 100)).hasSize(4);
        assertThat(m.readMap(16_384, 100)).isEmpty();
        assertThatThrownBy(() -> m.readMap(16_385, 1))
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.ENODATA));
        assertThatThrownBy(() -> m.readMap(-1, 1))
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.EINVAL));
    }

    @Test
    void concurrentWritersNeverLoseAMark() throws Exception {
        CbtMap m = CbtMap.create("a", 64L << 20, D.with("tracking_block_minimum_shift", 12));
        m.switchAtTake();
        Thread[] ts = new Thread[8];
        for (int t = 0; t < ts.length; t++) {
            int id = t;
            ts[t] = Thread.ofVirtual().start(() -> {
                for (int b = id; b < m.blockCount(); b += ts.length) {
                    m.mark((long) b << 12, 4096);
                }
            });
        }
        for (Thread t : ts) {
            t.join();
        }
        m.switchAtTake();
        assertThat(m.readMap(0, m.blockCount())).containsOnly(2);
    }

    @Test
    void aSavedMapRestoresWithTheSameGenerationNumbersShiftAndBothMaps() {
        CbtMap m = CbtMap.create("a", GiB, D);
        m.mark(5 << 16, 1);
        m.switchAtTake();
        m.mark(9 << 16, 70_000);
        CbtMap.Saved s = m.save();
        CbtMap r = CbtMap.restore(s);
        assertThat(r.info()).isEqualTo(m.info());
        assertThat(r.activeNumber()).isEqualTo(2);
        assertThat(r.readMap(0, r.blockCount())).isEqualTo(m.readMap(0, m.blockCount()));
        for (int b = 0; b < r.blockCount(); b++) {
            assertThat(r.writeValue(b)).isEqualTo(m.writeValue(b));
        }
        assertThat(r.writeValue(10)).isEqualTo(2);
        // the saved copy is the holder's: later marks do not reach it
        m.mark(100 << 16, 1);
        assertThat(s.writeMap()[100]).isZero();
        // a recorded block shift wins over today's parameters
        CbtMap.Saved bigBlocks = new CbtMap.Saved("a", s.generationId(), 1, 2, 20, GiB, GenerationReason.NEW_TRACKER, "",
                new byte[1024], new byte[1024]);
        assertThat(CbtMap.restore(bigBlocks).blockSizeBytes()).isEqualTo(1 << 20);
        assertThatThrownBy(() -> CbtMap.restore(new CbtMap.Saved("a", s.generationId(), 1, 2, 20, GiB,
                GenerationReason.NEW_TRACKER, "", new byte[1023], new byte[1024]))).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> CbtMap.restore(new CbtMap.Saved("a", s.generationId(), 3, 2, 20, GiB,
                GenerationReason.NEW_TRACKER, "", new byte[1024], new byte[1024]))).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void raiseLiftsEveryOverlappedBlockToTheActiveNumberAndNeverLowersOne() {
        CbtMap m = CbtMap.create("a", GiB, D);
        m.switchAtTake();
        m.switchAtTake(); // active 3
        m.raise((3L << 16) + 100, 1L << 16); // blocks 3 and 4
        m.raise(GiB - 10, 1L << 30); // the last block; the rest is past the map
        assertThat(m.writeValue(2)).isZero();
        assertThat(m.writeValue(3)).isEqualTo(3);
        assertThat(m.writeValue(4)).isEqualTo(3);
        assertThat(m.writeValue(5)).isZero();
        assertThat(m.writeValue(m.blockCount() - 1)).isEqualTo(3);
        assertThat(m.isCorrupted()).isFalse();
    }
}
