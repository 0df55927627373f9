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
        assertThatThrownBy(() -> new ChunkGeometry(0, 63)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("chunkShift (63) must be >= 0 and <= 62");
    }
}
