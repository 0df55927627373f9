package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.blksnap.engine.Errnos.errnoOf;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.device.NativeIo;
import org.blksnap.engine.event.EventQueue;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DiffStorageTest {
    @TempDir
    Path dir;


    private DiffStorage storage(EventQueue q, long minimum) {
        return new DiffStorage("s", q, minimum, NativeIo.system());
    }

    @Test
    void creationQueuesTheFirstLowFreeSpaceEventForTheMinimum() {
        EventQueue q = new EventQueue("s");
        storage(q, 2048);
        assertThat(q.take(0)).isInstanceOfSatisfying(SnapshotEvent.LowFreeSpace.class,
                e -> assertThat(e.requestedSectors()).isEqualTo(2048));
    }

    @Test
    void anAppendedFileIsHandedOutSequentiallyOneRegionPerChunk() throws Exception {
        DiffStorage s = storage(new EventQueue("s"), 64);
        s.append(StorageSpec.create(dir.resolve("f"), 64 * 512), p -> false);
        Region a = s.allocate(16);
        Region b = s.allocate(16);
        assertThat(a.offsetBytes()).isZero();
        assertThat(b.offsetBytes()).isEqualTo(16 * 512);
        assertThat(s.filledSectors()).isEqualTo(32);
        b.write(ByteBuffer.wrap("hello".getBytes()), 0);
        ByteBuffer back = ByteBuffer.allocate(5);
        b.read(back, 0);
        assertThat(new String(back.array())).isEqualTo("hello");
    }

    @Test
    void lowFreeSpaceFiresOnceAtHalfTheMinimumAndAnAppendOfTheRequestClearsIt() {
        EventQueue q = new EventQueue("s");
        DiffStorage s = storage(q, 64);
        q.take(0);
        s.append(StorageSpec.create(dir.resolve("f1"), 64 * 512), p -> false);
        s.allocate(16);
        assertThat(q.pending()).isZero();
        s.allocate(16); // free 32 = minimum/2
        assertThat(q.take(0)).isInstanceOfSatisfying(SnapshotEvent.LowFreeSpace.class,
                e -> assertThat(e.requestedSectors()).isEqualTo(64));
        assertThat(s.requestedSectors()).isEqualTo(128);
        s.allocate(16);
        assertThat(q.pending()).isZero();
        s.append(StorageSpec.create(dir.resolve("f2"), 64 * 512), p -> false);
        assertThat(s.capacitySectors()).isEqualTo(128);
        s.allocate(16);
        s.allocate(16);
        assertThat(q.pending()).isZero();
        s.allocate(16); // free 32 again
        assertThat(q.take(0)).isInstanceOf(SnapshotEvent.LowFreeSpace.class);
    }

    @Test
    void exhaustionOverflowsAndEveryLaterAllocationFailsWithEnospc() {
        DiffStorage s = storage(new EventQueue("s"), 64);
        s.append(StorageSpec.create(dir.resolve("f"), 40 * 512), p -> false);
        s.allocate(16);
        s.allocate(16);
        assertThat(errnoOf(() -> s.allocate(16))).isEqualTo(Errno.ENOSPC);
        assertThat(s.isOverflowed()).isTrue();
        s.append(StorageSpec.create(dir.resolve("g"), 64 * 512), p -> false);
        assertThat(errnoOf(() -> s.allocate(16))).isEqualTo(Errno.ENOSPC);
    }

    @Test
    void tailsTooShortForARegionAreSkippedAndCountAsFilled() {
        DiffStorage s = storage(new EventQueue("s"), 1024);
        s.append(new StorageSpec(dir.resolve("f"), 100 * 512, false,
                List.of(new SectorRange(0, 20), new SectorRange(40, 16))), p -> false);
        assertThat(s.capacitySectors()).isEqualTo(36);
        s.allocate(16);
        Region r = s.allocate(16);
        assertThat(r.offsetBytes()).isEqualTo(40 * 512);
        assertThat(s.filledSectors()).isEqualTo(36);
    }

    /** A filesystem that is full: fallocate fails with ENOSPC (as on a small tmpfs). */
    private static final class FullFilesystem implements NativeIo {
        @Override
        public int open(Path path, boolean write) {
            return 3;
        }

        @Override
        public void close(int handle) {
        }

        @Override
        public void preallocate(int handle, long offsetBytes, long lengthBytes) throws java.io.IOException {
            throw new java.io.IOException("fallocate at offset " + offsetBytes + " length " + lengthBytes
                    + " failed: errno 28");
        }

        @Override
        public void punchHole(int handle, long offsetBytes, long lengthBytes) {
            throw new UnsupportedOperationException();
        }

        @Override
        public long seekData(int handle, long offsetBytes) {
            throw new UnsupportedOperationException();
        }

        @Override
        public long seekHole(int handle, long offsetBytes) {
            throw new UnsupportedOperationException();
        }

        @Override
        public boolean available() {
            return true;
        }
    }

    @Test
    void aFileThatCannotBePreallocatedIsEnospcAndIsRemovedAgain() {
        DiffStorage s = new DiffStorage("s", new EventQueue("s"), 64, new FullFilesystem());
        Path f = dir.resolve("diff_storage#2");
        assertThatThrownBy(() -> s.append(StorageSpec.create(f, 16 << 20), p -> false))
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.ENOSPC))
                .hasMessageContaining("cannot preallocate").hasMessageContaining("diff_storage#2");
        assertThat(f).as("a refused append leaves no file behind").doesNotExist();
        assertThat(s.capacitySectors()).isZero();
    }

    @Test
    void aFilesystemWithoutRoomForANewFileIsEnospcNotEio() {
        assertThat(DiffStorage.noSpace(new java.nio.file.FileSystemException("/full/diff_storage#3", null,
                "No space left on device"))).isTrue();
        assertThat(DiffStorage.noSpace(new java.nio.file.AccessDeniedException("/ro/diff"))).isFalse();
        assertThat(DiffStorage.noSpace(new java.io.IOException("No space left on device"))).isFalse();
    }

    @Test
    void aMissingPathWithoutSizeIsEnoentAndNothingChanges() {
        DiffStorage s = storage(new EventQueue("s"), 64);
        assertThatThrownBy(() -> s.append(StorageSpec.whole(dir.resolve("nope")), p -> false))
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.ENOENT))
                .hasMessageContaining("nope");
        assertThat(s.capacitySectors()).isZero();
    }

    @Test
    void rangesOutsideOverlappingOrOnABackingStoreAreRefusedAndACreatedFileIsRemoved() throws Exception {
        DiffStorage s = storage(new EventQueue("s"), 64);
        Path f = dir.resolve("f");
        assertThat(errnoOf(() -> s.append(new StorageSpec(f, 64 * 512, false, List.of(new SectorRange(60, 8))), p -> false)))
                .isEqualTo(Errno.EINVAL);
        assertThat(Files.exists(f)).as("a file created for a refused append is removed").isFalse();
        Files.write(f, new byte[64 * 512]);
        assertThat(errnoOf(() -> s.append(new StorageSpec(f, 0, false,
                List.of(new SectorRange(0, 8), new SectorRange(4, 8))), p -> false))).isEqualTo(Errno.EINVAL);
        s.append(new StorageSpec(f, 0, false, List.of(new SectorRange(0, 16))), p -> false);
        assertThatThrownBy(() -> s.append(new StorageSpec(f, 0, false, List.of(new SectorRange(8, 16))), p -> false))
                .hasMessageContaining("overlaps storage already appended");
        s.append(new StorageSpec(f, 0, false, List.of(new SectorRange(16, 16))), p -> false);
        assertThat(s.capacitySectors()).isEqualTo(32);
        Path backing = dir.resolve("disk");
        Files.write(backing, new byte[64 * 512]);
        assertThatThrownBy(() -> s.append(StorageSpec.whole(backing), p -> p.equals(backing)))
                .hasMessageContaining("backing store");
        s.append(new StorageSpec(backing, 0, false, List.of(new SectorRange(32, 32))), p -> p.equals(backing));
        assertThat(s.capacitySectors()).isEqualTo(64);
        assertThat(Files.exists(f)).isTrue();
    }

    @Test
    void concurrentAllocationsNeverHandOutOverlappingRegions() throws Exception {
        DiffStorage s = storage(new EventQueue("s"), 1 << 20);
        s.append(StorageSpec.create(dir.resolve("f"), 4096L * 16 * 512), p -> false);
        java.util.Set<Long> offsets = java.util.concurrent.ConcurrentHashMap.newKeySet();
        java.util.concurrent.atomic.AtomicInteger enospc = new java.util.concurrent.atomic.AtomicInteger();
        java.util.List<Thread> ts = new java.util.ArrayList<>();
        for (int t = 0; t < 8; t++) {
            ts.add(Thread.ofVirtual().start(() -> {
                for (int i = 0; i < 600; i++) {
                    try {
                        assertThat(offsets.add(s.allocate(16).offsetBytes())).isTrue();
                    } catch (BlksnapException e) {
                        enospc.incrementAndGet();
                    }
                }
            }));
        }
        for (Thread t : ts) {
            t.join();
        }
        assertThat(offsets).hasSize(4096);
        assertThat(enospc.get()).isEqualTo(8 * 600 - 4096);
    }
}
