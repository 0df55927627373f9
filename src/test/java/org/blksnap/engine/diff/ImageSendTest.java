package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.blksnap.engine.Errnos.errnoOf;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.scenario.ShmTempDir;
import org.blksnap.engine.testing.FaultPlan.Op;
import org.blksnap.engine.testing.ForwardingDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link ImageIo#send}: what an image hands to a sink that lets the kernel send file ranges. The
 * sink ({@link RecordingSink}) reads file ranges only when the test "receives" them, after later
 * writes, as a socket holding page references would. 16 chunks of 64 KiB; the storage holds 8.
 */
class ImageSendTest {
    private static final int CHUNK = 64 << 10;
    private static final long CAPACITY = 16L * CHUNK;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private DiffFixture f;

    @BeforeEach
    void up() throws IOException {
        f = new DiffFixture(dir, CAPACITY, 16, 8L * CHUNK, 8);
    }

    @AfterEach
    void down() throws IOException {
        f.close();
    }

    private RecordingSink send(ImageIo image, long offsetBytes, int lengthBytes) throws IOException {
        RecordingSink sink = new RecordingSink(lengthBytes);
        image.send(offsetBytes, lengthBytes, sink);
        return sink;
    }

    /** A write to the live device as the tracker makes it: the chunk is copied first, then written. */
    private void writeLive(long chunk, long seed) throws IOException {
        if (!f.done.isDone(chunk)) {
            f.store(chunk);
        }
        f.writeOriginal(chunk * CHUNK, DiffFixture.pattern(seed, CHUNK));
    }

    @Test
    void chunksNotCopiedAreHandedAsBytesReadAtOnceNeverAsPagesOfTheOriginal() throws IOException {
        // An original the kernel could send from (a buffered regular file), so that handing its pages
        // would be possible at all.
        try (BlockDevice file = BlockDevices.open(dir.resolve("orig.img"), CAPACITY, false)) {
            assertThat(file.sender()).isNotNull();
            HookedDevice sendable = new HookedDevice(f.original, file.sender());
            ImageIo image = new ImageIo("orig", f.geometry, f.done, f.table, sendable, f.state);
            RecordingSink sink = send(image, CHUNK / 2, 3 * CHUNK);
            assertThat(sink.filePieces()).as("no page of the original is handed by reference").isEmpty();
            assertThat(sink.pieces).as("one buffer for the whole run").hasSize(1);
            // Every chunk of the range is copied and then overwritten before the receiver takes the bytes.
            for (long c = 0; c < 4; c++) {
                writeLive(c, 100 + c);
            }
            assertThat(sink.receive()).isEqualTo(f.takeTime(CHUNK / 2, 3 * CHUNK));
        }
    }

    @Test
    void copiedChunksAreHandedAsRangesOfTheirRegionsWhichLaterWritesToTheOriginalNeverChange() throws IOException {
        writeLive(1, 5);
        writeLive(2, 6);
        f.table.dropBuffers(); // copied chunks that are not cached (as after an in-kernel copy)
        RecordingSink sink = send(f.image, 0, 4 * CHUNK);
        assertThat(sink.filePieces()).extracting(RecordingSink.Piece::lengthBytes).containsExactly(CHUNK, CHUNK);
        assertThat(sink.pieces).extracting(RecordingSink.Piece::isFile).containsExactly(false, true, true, false);
        for (long c = 0; c < 4; c++) {
            writeLive(c, 200 + c);
        }
        assertThat(sink.receive()).isEqualTo(f.takeTime(0, 4 * CHUNK));
        assertThat(sink.scratchCalls()).as("one scratch buffer for the send").isEqualTo(1);
    }

    @Test
    void aSendOfCopiedChunksOnlyNeedsNoScratchBuffer() throws IOException {
        writeLive(3, 5);
        f.table.dropBuffers();
        RecordingSink sink = send(f.image, 3L * CHUNK + 100, CHUNK - 200);
        assertThat(sink.pieces).hasSize(1).allMatch(RecordingSink.Piece::isFile);
        assertThat(sink.scratchCalls()).isZero();
        assertThat(sink.receive()).isEqualTo(f.takeTime(3L * CHUNK + 100, CHUNK - 200));
    }

    @Test
    void aCachedChunkIsCopiedOutOfItsBufferUnderItsLockAndHandedAsBytes() throws IOException {
        byte[] data = DiffFixture.pattern(7, 1000);
        f.image.write(ByteBuffer.wrap(data), 5L * CHUNK + 300);
        assertThat(f.table.existing(5).buffer).as("an image write leaves the chunk cached").isNotNull();
        RecordingSink sink = send(f.image, 4L * CHUNK, 3 * CHUNK);
        assertThat(sink.filePieces()).isEmpty();
        assertThat(sink.pieces).as("the run and the cached chunk in one buffer").hasSize(1);
        byte[] expected = f.takeTime(4L * CHUNK, 3 * CHUNK);
        System.arraycopy(data, 0, expected, CHUNK + 300, data.length);
        assertThat(sink.receive()).isEqualTo(expected);
    }

    /**
     * The race the read protocol exists for: a chunk is copied and overwritten on the original while
     * the image reads it without a lock. The bytes read are new data; the chunk is done by the time
     * the done bits are checked again, so they are replaced from its region before they are handed.
     */
    @Test
    void aChunkCopiedAndOverwrittenWhileTheOriginalWasReadIsHandedFromItsRegion() throws IOException {
        HookedDevice hooked = new HookedDevice(f.original, null);
        ImageIo image = new ImageIo("orig", f.geometry, f.done, f.table, hooked, f.state);
        hooked.beforeRead = () -> {
            hooked.beforeRead = null;
            writeLive(2, 9);
        };
        RecordingSink sink = send(image, 0, 4 * CHUNK);
        assertThat(f.done.isDone(2)).isTrue();
        assertThat(sink.filePieces()).isEmpty();
        assertThat(sink.receive()).isEqualTo(f.takeTime(0, 4 * CHUNK));
    }

    @Test
    void aCorruptionWhileTheOriginalWasReadFailsTheSendBeforeAnyOfItsBytesAreHanded() {
        HookedDevice hooked = new HookedDevice(f.original, null);
        ImageIo image = new ImageIo("orig", f.geometry, f.done, f.table, hooked, f.state);
        hooked.beforeRead = () -> f.state.markCorrupted(Errno.ENOSPC, "test: a copy failed meanwhile");
        RecordingSink sink = new RecordingSink(2 * CHUNK);
        assertThat(errnoOf(() -> image.send(0, 2 * CHUNK, sink))).isEqualTo(Errno.EIO);
        assertThat(sink.pieces).as("bytes that may be new data never go out").isEmpty();
    }

    @Test
    void theSnapshotsCorruptionFailsASendBeforeItReadsAnything() {
        f.owner.snapshotCorruption.set(Errno.ENODEV);
        RecordingSink sink = new RecordingSink(CHUNK);
        assertThat(errnoOf(() -> f.image.send(0, CHUNK, sink))).isEqualTo(Errno.EIO);
        assertThat(sink.scratchCalls()).isZero();
        assertThat(f.original.faults().calls(Op.READ)).isZero();
    }

    @Test
    void aFailedChunkFailsTheSendWithEio() {
        f.table.fail(f.table.chunk(6));
        assertThatThrownBy(() -> send(f.image, 5L * CHUNK, 2 * CHUNK)).isInstanceOfSatisfying(BlksnapException.class,
                e -> assertThat(e).hasMessage("orig: chunk 6 failed"));
    }

    @Test
    void aStorageReadFailureIsThrownAfterThePiecesBeforeItWentOutAndCorruptsNothing() throws IOException {
        writeLive(1, 5);
        f.table.dropBuffers();
        StorageFaults.of(f.storagePath).fail(Op.READ);
        RecordingSink sink = new RecordingSink(2 * CHUNK);
        assertThatThrownBy(() -> f.image.send(0, 2 * CHUNK, sink)).isExactlyInstanceOf(IOException.class)
                .hasMessageStartingWith("difference storage read of " + f.storagePath);
        assertThat(sink.pieces).as("the chunk before went out first").hasSize(1);
        assertThat(sink.receive()).isEqualTo(f.takeTime(0, CHUNK));
        assertThat(f.state.corruption()).isNull();
    }

    @Test
    void aFailedReadOfTheOriginalIsThrownAsItIsAndHandsNothing() {
        f.original.faults().fail(Op.READ, 2L * CHUNK, 3L * CHUNK);
        RecordingSink sink = new RecordingSink(4 * CHUNK);
        assertThatThrownBy(() -> f.image.send(0, 4 * CHUNK, sink)).isExactlyInstanceOf(IOException.class);
        assertThat(sink.pieces).isEmpty();
        assertThat(f.state.corruption()).isNull();
    }

    /**
     * Forwards to another device, runs {@link #beforeRead} (if set) before each read, and offers the
     * sender it is given.
     */
    private static final class HookedDevice extends ForwardingDevice {
        private final Sender sender;
        volatile ThrowingRunnable beforeRead;

        HookedDevice(BlockDevice target, Sender sender) {
            super(target);
            this.sender = sender;
        }

        @Override
        public Sender sender() {
            return sender;
        }

        @FunctionalInterface
        interface ThrowingRunnable {
            void run() throws IOException;
        }

        @Override
        public void read(ByteBuffer dst, long offsetBytes) throws IOException {
            ThrowingRunnable hook = beforeRead;
            if (hook != null) {
                hook.run();
            }
            super.read(dst, offsetBytes);
        }

        @Override
        public void close() {
            // the fixture closes the device it wraps
        }
    }
}
