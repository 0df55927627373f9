package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.blksnap.engine.BlockDevice;
import org.junit.jupiter.api.Test;

/** Allocation of an image over 8 chunks of 4 KiB, the last one 1 KiB short (31 KiB). */
class ImageAllocationMapTest {
    private static final int CHUNK = 4096;
    private static final long CAPACITY = 8L * CHUNK - 1024;

    private final ChunkGeometry geometry = new ChunkGeometry(CAPACITY, 12);
    private final DoneBitmap done = new DoneBitmap(geometry.chunkCount());
    private final ScriptedOriginal original = new ScriptedOriginal();
    private final ImageAllocationMap map = new ImageAllocationMap(geometry, done, original);

    @Test
    void chunksNotCopiedReportTheOriginalsExtentsCutAtTheEndOfTheRun() throws IOException {
        original.extents = List.of(new Extent(0, 6000, false), new Extent(6000, 100_000, true));
        done.markDone(3);
        assertThat(all(0, CAPACITY)).containsExactly(
                new Extent(0, 6000, false), new Extent(6000, 3 * CHUNK - 6000, true),
                new Extent(3 * CHUNK, CHUNK, false),
                new Extent(4 * CHUNK, CAPACITY - 4 * CHUNK, true));
        assertThat(original.asked).containsExactly(new Extent(0, 3 * CHUNK, false), new Extent(4 * CHUNK, CAPACITY - 4 * CHUNK, false));
    }

    @Test
    void copiedChunksAreDataWhereTheOriginalHasHolesAndARunOfThemIsOneExtent() throws IOException {
        original.extents = List.of(new Extent(0, CAPACITY, true));
        done.markDone(1);
        done.markDone(2);
        assertThat(all(CHUNK, 2 * CHUNK)).containsExactly(new Extent(CHUNK, 2 * CHUNK, false));
        assertThat(original.asked).isEmpty();
    }

    @Test
    void theLastExtentRunsOnToItsChunksEndButNeverPastTheDevice() throws IOException {
        original.extents = List.of(new Extent(0, CAPACITY, true));
        done.markDone(7);
        assertThat(all(7 * CHUNK, 10)).containsExactly(new Extent(7 * CHUNK, CHUNK - 1024, false));
        assertThat(all(CHUNK + 10, 10)).containsExactly(new Extent(CHUNK + 10, CHUNK - 10, true));
    }

    @Test
    void whatTheOriginalLeavesUnreportedIsData() throws IOException {
        original.extents = List.of(new Extent(0, 1000, true));
        assertThat(all(0, 2 * CHUNK)).containsExactly(new Extent(0, 1000, true), new Extent(1000, 2 * CHUNK - 1000, false));
    }

    @Test
    void aChunkCopiedWhileTheOriginalIsAskedIsReportedAsData() throws IOException {
        original.extents = List.of(new Extent(0, CAPACITY, true));
        original.whileAsked = () -> done.markDone(2);
        List<Extent> seen = new ArrayList<>();
        map.map(0, CAPACITY, (len, hole) -> seen.add(new Extent(0, len, hole)));
        assertThat(seen).extracting(Extent::hole).containsExactly(false);
    }

    @Test
    void theWalkStopsWhenTheSinkSaysSo() throws IOException {
        original.extents = List.of(new Extent(0, 100, false), new Extent(100, 100, true), new Extent(200, CAPACITY, false));
        List<Long> lengths = new ArrayList<>();
        map.map(0, CAPACITY, (len, hole) -> lengths.add(len) && lengths.size() < 2);
        assertThat(lengths).containsExactly(100L, 100L);
    }

    @Test
    void extentsAreNeverEmpty() {
        assertThatThrownBy(() -> new Extent(0, 0, true)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("lengthBytes (0) must be > 0");
        assertThatThrownBy(() -> new Extent(-1, 1, true)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("offsetBytes (-1) must be >= 0");
        assertThat(new Extent(5, 10, true).asData()).isEqualTo(new Extent(5, 10, false));
        assertThat(new Extent(5, 10, true).endBytes()).isEqualTo(15);
    }

    /** All extents reported for the range, with their offsets. */
    private List<Extent> all(long offsetBytes, long lengthBytes) throws IOException {
        List<Extent> out = new ArrayList<>();
        long[] next = {offsetBytes};
        map.map(offsetBytes, lengthBytes, (len, hole) -> {
            out.add(new Extent(next[0], len, hole));
            next[0] += len;
            return true;
        });
        return out;
    }

    /**
     * An original that reports a fixed list of extents, cut to what is asked, and records each
     * question (as an extent: offset and length). Only {@link #mapAllocation} and the sizes work.
     */
    private static final class ScriptedOriginal implements BlockDevice {
        volatile List<Extent> extents = List.of();
        volatile Runnable whileAsked = () -> { };
        final List<Extent> asked = new ArrayList<>();

        @Override
        public void mapAllocation(long offsetBytes, long lengthBytes, ExtentSink sink) {
            asked.add(new Extent(offsetBytes, lengthBytes, false));
            whileAsked.run();
            for (Extent x : extents) {
                if (x.endBytes() <= offsetBytes) {
                    continue;
                }
                long from = Math.max(offsetBytes, x.offsetBytes());
                if (!sink.extent(x.endBytes() - from, x.hole())) {
                    return;
                }
            }
        }

        @Override
        public String name() {
            return "scripted";
        }

        @Override
        public long sizeBytes() {
            return CAPACITY;
        }

        @Override
        public int logicalBlockSize() {
            return 512;
        }

        @Override
        public void read(ByteBuffer dst, long offsetBytes) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void write(ByteBuffer src, long offsetBytes) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void flush() {
            throw new UnsupportedOperationException();
        }

        @Override
        public void discard(long offsetBytes, long lengthBytes) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void close() {
        }
    }
}
