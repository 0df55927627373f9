package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.blksnap.engine.Errnos.errnoOf;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.scenario.ShmTempDir;
import org.blksnap.engine.testing.FaultPlan.Op;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Image reads and writes over 16 chunks of 64 KiB; the storage holds 4 chunks. */
class ImageIoTest {
    private static final int CHUNK = 64 << 10;
    private static final long CAPACITY = 16L * CHUNK;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private DiffFixture f;

    @BeforeEach
    void up() throws IOException {
        f = new DiffFixture(dir, CAPACITY, 16, 4L * CHUNK, 8);
    }

    @AfterEach
    void down() throws IOException {
        f.close();
    }

    @Test
    void chunksNotCopiedAreReadFromTheOriginal() throws IOException {
        assertThat(f.readImage(CHUNK - 100, 300)).isEqualTo(f.takeTime(CHUNK - 100, 300));
        assertThat(f.table.existing(0)).as("a read creates no descriptor").isNull();
    }

    @Test
    void copiedChunksAreReadFromTheStorageOnceTheOriginalChanged() throws IOException {
        f.store(1);
        f.writeOriginal(CHUNK, DiffFixture.pattern(5, CHUNK));
        assertThat(f.readImage(0, 3 * CHUNK)).as("across a copied chunk between two that are not")
                .isEqualTo(f.takeTime(0, 3 * CHUNK));
    }

    @Test
    void aReadAdvancesTheBufferAndFillsItFromItsPosition() throws IOException {
        f.store(2);
        ByteBuffer b = ByteBuffer.allocate(CHUNK + 20).position(20);
        f.image.read(b, 2L * CHUNK - CHUNK / 2);
        assertThat(b.position()).isEqualTo(CHUNK + 20);
        assertThat(java.util.Arrays.copyOfRange(b.array(), 20, CHUNK + 20)).isEqualTo(f.takeTime(2L * CHUNK - CHUNK / 2, CHUNK));
    }

    @Test
    void theFirstWriteOfAChunkCopiesItAndNeverTouchesTheOriginal() throws IOException {
        byte[] data = DiffFixture.pattern(6, 1000);
        ByteBuffer src = ByteBuffer.wrap(data);
        f.image.write(src, 3L * CHUNK + 500);
        assertThat(src.hasRemaining()).isFalse();
        assertThat(f.table.existing(3).state).isEqualTo(Chunk.State.STORED);
        assertThat(f.done.isDone(3)).isTrue();
        byte[] expected = f.takeTime(3L * CHUNK, CHUNK);
        System.arraycopy(data, 0, expected, 500, 1000);
        assertThat(f.readImage(3L * CHUNK, CHUNK)).isEqualTo(expected);
        assertThat(f.original(3L * CHUNK, CHUNK)).isEqualTo(f.takeTime(3L * CHUNK, CHUNK));
    }

    @Test
    void aWriteAcrossChunksCopiesEachAndLaterWritesGoThrough() throws IOException {
        byte[] first = DiffFixture.pattern(7, CHUNK);
        f.image.write(ByteBuffer.wrap(first), CHUNK / 2);
        byte[] second = DiffFixture.pattern(8, 100);
        f.image.write(ByteBuffer.wrap(second), CHUNK);
        assertThat(f.table.chunksCopied()).isEqualTo(2);
        byte[] expected = f.takeTime(0, 2 * CHUNK);
        System.arraycopy(first, 0, expected, CHUNK / 2, CHUNK);
        System.arraycopy(second, 0, expected, CHUNK, 100);
        assertThat(f.readImage(0, 2 * CHUNK)).isEqualTo(expected);
    }

    @Test
    void aFailedFirstWriteCorruptsTheAreaAndTellsTheOwnerOnce() throws IOException {
        for (int i = 0; i < 4; i++) {
            f.store(i); // the storage is full now
        }
        assertThatThrownBy(() -> f.image.write(ByteBuffer.allocate(10), 5L * CHUNK))
                .isInstanceOfSatisfying(BlksnapException.class, e -> {
                    assertThat(e.errno()).isEqualTo(Errno.EIO);
                    assertThat(e).hasMessageStartingWith("orig: image write failed: ");
                    assertThat(e.getCause()).isInstanceOfSatisfying(BlksnapException.class,
                            c -> assertThat(c.errno()).isEqualTo(Errno.ENOSPC));
                });
        assertThat(f.table.existing(5).state).isEqualTo(Chunk.State.FAILED);
        assertThat(f.state.corruption()).isEqualTo(Errno.ENOSPC);
        assertThat(f.owner.reports()).containsExactly("orig:ENOSPC");
        assertThat(f.cache.size()).as("buffers dropped at corruption").isZero();
        assertThat(errnoOf(() -> f.readImage(0, 10))).isEqualTo(Errno.EIO);
        assertThat(errnoOf(() -> f.image.write(ByteBuffer.allocate(10), 0))).isEqualTo(Errno.EIO);
    }

    @Test
    void aFailedFirstWriteWithAnIoErrorThrowsItAndCorruptsWithEio() {
        StorageFaults.of(f.storagePath).fail(Op.WRITE);
        assertThatThrownBy(() -> f.image.write(ByteBuffer.allocate(10), 0)).isExactlyInstanceOf(IOException.class);
        assertThat(f.state.corruption()).isEqualTo(Errno.EIO);
        assertThat(f.owner.reports()).containsExactly("orig:EIO");
    }

    @Test
    void aChunkThatFailedFailsEveryImageIoWithEio() {
        Chunk c = f.table.chunk(6);
        f.table.fail(c);
        assertThatThrownBy(() -> f.readImage(6L * CHUNK, 10)).isInstanceOfSatisfying(BlksnapException.class,
                e -> assertThat(e).hasMessage("orig: chunk 6 failed"));
        assertThat(errnoOf(() -> f.image.write(ByteBuffer.allocate(10), 6L * CHUNK))).isEqualTo(Errno.EIO);
        assertThat(errnoOf(() -> f.readImage(7L * CHUNK, 10))).as("other chunks still work").isNull();
    }

    @Test
    void aFailedReadOfTheOriginalIsThrownAsItIsAndCorruptsNothing() {
        f.original.faults().fail(Op.READ, 2L * CHUNK, 3L * CHUNK);
        assertThatThrownBy(() -> f.readImage(0, 4 * CHUNK)).isExactlyInstanceOf(IOException.class);
        assertThat(f.state.corruption()).isNull();
        assertThat(f.owner.reports()).isEmpty();
    }

    @Test
    void theSnapshotsCorruptionFailsImageIoWithEio() {
        f.owner.snapshotCorruption.set(Errno.ENODEV);
        assertThat(errnoOf(() -> f.readImage(0, 10))).isEqualTo(Errno.EIO);
        assertThat(errnoOf(() -> f.image.write(ByteBuffer.allocate(10), 0))).isEqualTo(Errno.EIO);
    }
}
