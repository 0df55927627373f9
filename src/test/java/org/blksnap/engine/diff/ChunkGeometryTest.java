package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.blksnap.engine.ParamValues;
import org.junit.jupiter.api.Test;

class ChunkGeometryTest {
    private static final long MiB = 1 << 20;

    @Test
    void theShiftStartsAtTheMinimumAndGrowsUntilTheCountFitsTheMaximum() {
        ParamValues v = ParamValues.DEFAULTS.with("chunk_maximum_count", 16);
        assertThat(ChunkGeometry.of(4 * MiB, 512, v).chunkShift()).as("16 chunks of 256 KiB fit").isEqualTo(18);
        assertThat(ChunkGeometry.of(4 * MiB + 1, 512, v).chunkShift()).as("17 chunks do not").isEqualTo(19);
        assertThat(ChunkGeometry.of(64 * MiB, 512, v).chunkShift()).isEqualTo(22);
    }

    @Test
    void aChunkIsNeverLargerThan64MiBWhateverChunkMaximumCountSays() {
        ParamValues one = ParamValues.DEFAULTS.with("chunk_maximum_count", 1);
        ChunkGeometry g = ChunkGeometry.of(1L << 40, 512, one);
        assertThat(g.chunkShift()).as("1 TiB in one chunk would need 2^40-byte chunks").isEqualTo(26);
        assertThat(g.chunkSizeBytes()).as("no int overflow").isEqualTo(64 * (int) MiB);
        assertThat(g.chunkCount()).isEqualTo(1L << 14);
        assertThat(ChunkGeometry.of(64 * MiB, 512, one).chunkShift()).as("exactly one 64 MiB chunk").isEqualTo(26);
        assertThat(ChunkGeometry.of(32 * MiB, 512, one).chunkShift()).isEqualTo(25);
    }

    @Test
    void theShiftGrowsUntilAChunkHoldsTheMinimumIoSize() {
        assertThat(ChunkGeometry.of(4 * MiB, 1 << 20, ParamValues.DEFAULTS).chunkShift()).isEqualTo(20);
        assertThat(ChunkGeometry.of(4 * MiB, 4096, ParamValues.DEFAULTS).chunkShift()).isEqualTo(18);
    }

    @Test
    void aCapacityThatIsNotAMultipleOfTheChunkEndsWithAShortChunk() {
        ChunkGeometry g = new ChunkGeometry(3 * 65536 + 4096, 16);
        assertThat(g.chunkCount()).isEqualTo(4);
        assertThat(g.chunkSizeBytes()).isEqualTo(65536);
        assertThat(g.chunkSectors()).isEqualTo(128);
        assertThat(g.chunkIndex(65535)).isZero();
        assertThat(g.chunkIndex(65536)).isEqualTo(1);
        assertThat(g.chunkStart(3)).isEqualTo(3 * 65536);
        assertThat(g.chunkEnd(2)).isEqualTo(3 * 65536);
        assertThat(g.chunkEnd(3)).as("the last chunk ends at the device's end").isEqualTo(3 * 65536 + 4096);
        assertThat(g.chunkBytes(2)).isEqualTo(65536);
        assertThat(g.chunkBytes(3)).isEqualTo(4096);
        assertThat(g.offsetInChunk(2 * 65536 + 100)).isEqualTo(100);
    }

    @Test
    void anEmptyDeviceHasNoChunks() {
        assertThat(new ChunkGeometry(0, 18).chunkCount()).isZero();
        assertThat(ChunkGeometry.chunkCount(1, 18)).isEqualTo(1);
    }

    @Test
    void badArgumentsAreRefusedNamingTheArgument() {
        assertThatThrownBy(() -> new ChunkGeometry(-1, 18)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("capacityBytes (-1) must be >= 0");
        assertThatThrownBy(() -> new ChunkGeometry(0, 27)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("chunkShift (27) must be >= 0 and <= 26");
    }
}
