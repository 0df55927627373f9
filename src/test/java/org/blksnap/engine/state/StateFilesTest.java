package org.blksnap.engine.state;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link StateFiles#writeSkippingZeros}: the file reads back byte for byte with its full length, whatever is zero and however it is cut in parts. */
class StateFilesTest {
    static final int P = StateFiles.SPARSE_PIECE_BYTES;

    @TempDir
    Path dir;

    byte[] roundTrip(byte[] content, int offsetInArray) throws Exception {
        byte[] backing = new byte[offsetInArray + content.length + 3];
        System.arraycopy(content, 0, backing, offsetInArray, content.length);
        ByteBuffer src = ByteBuffer.wrap(backing, offsetInArray, content.length).slice();
        Path f = dir.resolve("f" + System.nanoTime());
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            StateFiles.writeSkippingZeros(ch, new ByteBuffer[] {src}, f);
        }
        return Files.readAllBytes(f);
    }

    /** {@code content} written as parts cut at {@code cuts} (offsets into it), each part at an array offset of 5. */
    byte[] roundTripParts(byte[] content, int... cuts) throws Exception {
        ByteBuffer[] parts = new ByteBuffer[cuts.length + 1];
        int from = 0;
        for (int i = 0; i <= cuts.length; i++) {
            int to = i < cuts.length ? cuts[i] : content.length;
            byte[] backing = new byte[5 + (to - from) + 2];
            System.arraycopy(content, from, backing, 5, to - from);
            parts[i] = ByteBuffer.wrap(backing, 5, to - from);
            from = to;
        }
        Path f = dir.resolve("p" + System.nanoTime());
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            StateFiles.writeSkippingZeros(ch, parts, f);
        }
        for (ByteBuffer part : parts) {
            assertThat(part.position()).as("parts are not consumed").isEqualTo(5);
        }
        return Files.readAllBytes(f);
    }

    @Test
    void partsReadBackAsTheirConcatenationWhereverTheyAreCut() throws Exception {
        byte[] c = new byte[6 * P + 300]; // a header, two maps mostly zero, a trailer: as a checkpoint
        c[10] = 1;
        c[P + 7] = 2; // in the piece the first cut falls in
        c[4 * P + 1] = 3;
        c[c.length - 1] = 4;
        int[][] cutsList = {{150}, {150, 3 * P + 150}, {150, 3 * P + 150, 6 * P + 150}, {P, 2 * P}, {1, 2, 3},
            {c.length - 1}, {}};
        for (int[] cuts : cutsList) {
            assertThat(roundTripParts(c, cuts)).as("cut at %s", java.util.Arrays.toString(cuts)).isEqualTo(c);
        }
        byte[] zeros = new byte[3 * P + 9];
        assertThat(roundTripParts(zeros, 100, 2 * P)).isEqualTo(zeros);
    }

    @Test
    void everyShapeOfZerosAndDataReadsBackTheSame() throws Exception {
        Random rnd = new Random(7);
        byte[] allZero = new byte[3 * P + 100];
        byte[] middle = new byte[4 * P];
        middle[2 * P + 5] = 1;
        byte[] ends = new byte[5 * P];
        ends[0] = 9;
        ends[ends.length - 1] = 9;
        byte[] small = new byte[100];
        small[40] = 3;
        byte[] noisy = new byte[2 * P + 17];
        rnd.nextBytes(noisy);
        byte[] lastPieceZero = new byte[3 * P];
        lastPieceZero[5] = 1;
        for (byte[] c : new byte[][] {allZero, middle, ends, small, noisy, lastPieceZero, new byte[1]}) {
            for (int off : new int[] {0, 11}) {
                assertThat(roundTrip(c, off)).as("%d bytes at array offset %d", c.length, off).isEqualTo(c);
            }
        }
    }
}
