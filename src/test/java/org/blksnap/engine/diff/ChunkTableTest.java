package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

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

/** One chunk's load, store, read, write and failure; 16 chunks of 64 KiB, the last one 4 KiB short. */
class ChunkTableTest {
    private static final int CHUNK = 64 << 10;
    private static final long CAPACITY = 16L * CHUNK - 4096;

    @TempDir(factory = ShmTempDir.class)
    Path dir;

    private DiffFixture f;

    @BeforeEach
    void up() throws IOException {
        f = new DiffFixture(dir, CAPACITY, 16, 4L * CHUNK, 2);
    }

    @AfterEach
    void down() throws IOException {
        f.close();
    }

    @Test
    void descriptorsExistOnlyOnceAsked() {
        assertThat(f.table.existing(3)).isNull();
        Chunk c = f.table.chunk(3);
        assertThat(c.state).isEqualTo(Chunk.State.NEW);
        assertThat(f.table.chunk(3)).isSameAs(c);
        assertThat(f.table.existing(3)).isSameAs(c);
    }

    @Test
    void storeCopiesTheTakeTimeContentIntoARegionAndMarksTheChunkDone() throws IOException {
        f.store(2);
        Chunk c = f.table.existing(2);
        assertThat(c.state).isEqualTo(Chunk.State.STORED);
        assertThat(f.done.isDone(2)).isTrue();
        assertThat(f.done.isDone(1)).isFalse();
        assertThat(f.table.chunksCopied()).isEqualTo(1);
        assertThat(c.buffer).as("kept in the cache").isNotNull();
        assertThat(read(c.region, 0, CHUNK)).isEqualTo(f.takeTime(2L * CHUNK, CHUNK));
        assertThat(f.storage.filledSectors()).isEqualTo(CHUNK / 512);
    }

    @Test
    void theShortLastChunkStoresOnlyItsBytesInAFullRegion() throws IOException {
        f.store(15);
        Chunk c = f.table.existing(15);
        assertThat(c.region.lengthBytes()).isEqualTo(CHUNK);
        assertThat(read(c.region, 0, CHUNK - 4096)).isEqualTo(f.takeTime(15L * CHUNK, CHUNK - 4096));
    }

    @Test
    void imageDataIsAppliedOverTheTakeTimeContentBeforeTheChunkIsWritten() throws IOException {
        byte[] data = DiffFixture.pattern(9, 100);
        Chunk c = f.table.chunk(1);
        c.lock.lock();
        try {
            f.table.store(c, ByteBuffer.wrap(data), 1000);
        } finally {
            c.lock.unlock();
        }
        byte[] expected = f.takeTime(CHUNK, CHUNK);
        System.arraycopy(data, 0, expected, 1000, 100);
        assertThat(read(c.region, 0, CHUNK)).isEqualTo(expected);
        assertThat(f.original(CHUNK, CHUNK)).as("the original is not written").isEqualTo(f.takeTime(CHUNK, CHUNK));
    }

    @Test
    void aStoreWhoseOriginalReadFailsLeavesTheChunkNewAndItsBufferInThePool() {
        f.original.faults().fail(Op.READ);
        assertThatThrownBy(() -> f.store(4)).isInstanceOf(IOException.class).hasMessageContaining("injected read fault");
        Chunk c = f.table.existing(4);
        assertThat(c.state).isEqualTo(Chunk.State.NEW);
        assertThat(c.buffer).isNull();
        assertThat(f.done.isDone(4)).isFalse();
        assertThat(f.table.chunksCopied()).isZero();
        assertThat(f.pool.freeCount()).as("the buffer went back").isEqualTo(1);
        assertThat(f.storage.filledSectors()).as("no region taken").isZero();
    }

    @Test
    void aStoreWhoseStorageWriteFailsLeavesTheChunkNew() {
        StorageFaults.of(f.storagePath).fail(Op.WRITE);
        assertThatThrownBy(() -> f.store(4)).isInstanceOf(IOException.class)
                .hasMessageStartingWith("difference storage write of " + f.storagePath + " at offset 0 length " + CHUNK);
        assertThat(f.table.existing(4).state).isEqualTo(Chunk.State.NEW);
        assertThat(f.done.isDone(4)).isFalse();
    }

    @Test
    void aStoreIntoAFullStorageFailsWithEnospc() throws IOException {
        for (int i = 0; i < 4; i++) {
            f.store(i);
        }
        assertThatThrownBy(() -> f.store(4)).isInstanceOfSatisfying(BlksnapException.class,
                e -> assertThat(e.errno()).isEqualTo(Errno.ENOSPC));
        assertThat(f.table.existing(4).state).isEqualTo(Chunk.State.NEW);
    }

    @Test
    void aFailedChunkIsDoneAndHoldsNothing() throws IOException {
        f.store(5);
        Chunk c = f.table.existing(5);
        f.table.fail(c);
        assertThat(c.state).isEqualTo(Chunk.State.FAILED);
        assertThat(c.region).isNull();
        assertThat(c.buffer).isNull();
        assertThat(f.done.isDone(5)).isTrue();
        assertThat(f.cache.size()).isZero();
        Chunk fresh = f.table.chunk(6);
        f.table.fail(fresh);
        assertThat(f.done.isDone(6)).as("a chunk that never held anything fails too").isTrue();
    }

    @Test
    void aStoredChunkReadsFromItsCachedBufferOrAfterEvictionFromItsRegion() throws IOException {
        f.store(0);
        Chunk c = f.table.existing(0);
        StorageFaults.of(f.storagePath).fail(Op.READ);
        assertThat(readStored(c, 4096, 512)).as("from the cache").isEqualTo(f.takeTime(4096, 512));
        f.store(1);
        f.store(2); // the cache holds two: chunk 0 is evicted
        assertThat(c.buffer).isNull();
        assertThatThrownBy(() -> readStored(c, 4096, 512)).isInstanceOf(IOException.class);
        StorageFaults.of(f.storagePath).heal();
        assertThat(readStored(c, 4096, 512)).as("from the region").isEqualTo(f.takeTime(4096, 512));
    }

    @Test
    void writesToAStoredChunkReachTheRegionAndTheCachedBuffer() throws IOException {
        f.store(3);
        Chunk c = f.table.existing(3);
        byte[] data = DiffFixture.pattern(7, 512);
        ByteBuffer piece = ByteBuffer.wrap(data);
        c.lock.lock();
        try {
            f.table.writeStored(c, piece, 2048);
        } finally {
            c.lock.unlock();
        }
        assertThat(piece.position()).as("the caller's buffer does not move").isZero();
        assertThat(readStored(c, 2048, 512)).isEqualTo(data);
        assertThat(read(c.region, 2048, 512)).isEqualTo(data);
    }

    @Test
    void closeDropsEveryDescriptorAndBuffer() throws IOException {
        f.store(0);
        f.table.close();
        assertThat(f.table.existing(0)).isNull();
        assertThat(f.cache.size()).isZero();
        assertThat(f.pool.freeCount()).isZero();
    }

    private byte[] readStored(Chunk c, int offsetInChunk, int lengthBytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(lengthBytes + 10);
        c.lock.lock();
        try {
            f.table.readStored(c, b, 10, offsetInChunk, lengthBytes);
        } finally {
            c.lock.unlock();
        }
        assertThat(b.position()).isZero();
        return java.util.Arrays.copyOfRange(b.array(), 10, 10 + lengthBytes);
    }

    private static byte[] read(Region r, long offsetInRegion, int lengthBytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(lengthBytes);
        r.read(b, offsetInRegion);
        return b.array();
    }
}
