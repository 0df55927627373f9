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

/** {@link StateFiles#writeSkippingZeros}: the file reads back byte for byte with its full length, whatever is zero. */
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
            StateFiles.writeSkippingZeros(ch, src, f);
        }
        return Files.readAllBytes(f);
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
