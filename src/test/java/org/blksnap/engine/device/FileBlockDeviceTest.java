package org.blksnap.engine.device;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assumptions.assumeThat;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.blksnap.engine.BlockDevice;
import org.blksnap.testing.LoopDevice;
import org.blksnap.util.DirectBuffers;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FileBlockDeviceTest {
    private static final long MiB = 1 << 20;

    @TempDir
    Path dir;

    private static List<String> map(BlockDevice d, long off, long len) throws IOException {
        List<String> out = new ArrayList<>();
        d.mapAllocation(off, len, (l, hole) -> {
            out.add(l + (hole ? "h" : "d"));
            return true;
        });
        return out;
    }

    @Test
    void aMissingFileIsCreatedSparseAtTheGivenSizeAndReadsAsZeros() throws Exception {
        try (BlockDevice d = BlockDevices.open(dir.resolve("a.img"), 64 * MiB, false)) {
            assertThat(d.sizeBytes()).isEqualTo(64 * MiB);
            assertThat(d.logicalBlockSize()).isEqualTo(512);
            ByteBuffer b = ByteBuffer.allocate(4096);
            d.read(b, 10 * MiB);
            assertThat(b.array()).containsOnly(0);
            assertThat(map(d, 0, 64 * MiB)).containsExactly(64 * MiB + "h");
        }
        assertThat(Files.size(dir.resolve("a.img"))).isEqualTo(64 * MiB);
    }

    @Test
    void aMissingFileWithoutASizeIsAnErrorNamingThePath() {
        assertThatThrownBy(() -> BlockDevices.open(dir.resolve("none.img"), 0, false))
                .isInstanceOf(IOException.class).hasMessageContaining("none.img").hasMessageContaining("does not exist");
    }

    @Test
    void writesReadBackAndShowAsDataInTheAllocationMap() throws Exception {
        try (BlockDevice d = BlockDevices.open(dir.resolve("a.img"), 8 * MiB, false)) {
            byte[] data = new byte[(int) MiB];
            java.util.Arrays.fill(data, (byte) 0x5a);
            d.write(ByteBuffer.wrap(data), 2 * MiB);
            ByteBuffer back = ByteBuffer.allocate((int) MiB);
            d.read(back, 2 * MiB);
            assertThat(back.array()).isEqualTo(data);
            assertThat(map(d, 0, 8 * MiB)).containsExactly(2 * MiB + "h", MiB + "d", 5 * MiB + "h");
            assertThat(map(d, 2 * MiB + 4096, 4096)).first().isEqualTo((MiB - 4096) + "d");
        }
    }

    @Test
    void discardPunchesAHoleAndWriteZeroesReadsBackAsZeros() throws Exception {
        try (BlockDevice d = BlockDevices.open(dir.resolve("a.img"), 8 * MiB, false)) {
            assumeThat(NativeIo.system().available()).isTrue();
            byte[] data = new byte[(int) (4 * MiB)];
            java.util.Arrays.fill(data, (byte) 1);
            d.write(ByteBuffer.wrap(data), 0);
            d.discard(0, MiB);
            d.writeZeroes(MiB, MiB, false);
            d.writeZeroes(2 * MiB, MiB, true);
            ByteBuffer back = ByteBuffer.allocate((int) (3 * MiB));
            d.read(back, 0);
            assertThat(back.array()).containsOnly(0);
            assertThat(map(d, 0, 8 * MiB)).startsWith(MiB + "h", MiB + "d", MiB + "h", MiB + "d");
            assertThat(d.fastZeroes()).isTrue();
        }
    }

    @Test
    void rangesOutsideTheDeviceAreRejectedNamingTheDevice() throws Exception {
        try (BlockDevice d = BlockDevices.open(dir.resolve("a.img"), MiB, false)) {
            assertThatThrownBy(() -> d.read(ByteBuffer.allocate(1024), MiB - 512))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("a.img").hasMessageContaining("outside");
            assertThatThrownBy(() -> d.write(ByteBuffer.allocate(1), -1)).isInstanceOf(IllegalArgumentException.class);
        }
    }

    @Test
    void directIoServesAlignedAndUnalignedRequestsCoherently() throws Exception {
        Path p = Path.of("/var/tmp").resolve("blksnap-direct-" + ProcessHandle.current().pid() + ".img");
        try {
            BlockDevice d;
            try {
                d = BlockDevices.open(p, 4 * MiB, true);
            } catch (IOException | UnsupportedOperationException e) {
                assumeThat(e).as("O_DIRECT unsupported here").isNull();
                return;
            }
            try (d) {
                ByteBuffer aligned = DirectBuffers.allocateAligned(8192, 4096);
                while (aligned.hasRemaining()) {
                    aligned.put((byte) 7);
                }
                aligned.flip();
                d.write(aligned, 8192);
                d.write(ByteBuffer.wrap(new byte[] {1, 2, 3}), 8193);
                ByteBuffer back = DirectBuffers.allocateAligned(8192, 4096);
                d.read(back, 8192);
                assertThat(back.get(0)).isEqualTo((byte) 7);
                assertThat(back.get(1)).isEqualTo((byte) 1);
                assertThat(back.get(3)).isEqualTo((byte) 3);
                assertThat(back.get(4)).isEqualTo((byte) 7);
            }
        } finally {
            Files.deleteIfExists(p);
        }
    }

    @Test
    @Tag("system")
    void aLoopBlockDeviceReportsItsSizeAndBlockSizeFromSysfs() throws Exception {
        Path backing = dir.resolve("loop.img");
        BlockDevices.createSparse(backing, 32 * MiB);
        try (LoopDevice loop = LoopDevice.attach(backing, 4096);
             BlockDevice d = BlockDevices.open(loop.path(), 0, false)) {
            assertThat(BlockDevices.isBlockDevice(loop.path())).isTrue();
            assertThat(d.sizeBytes()).isEqualTo(32 * MiB);
            assertThat(d.logicalBlockSize()).isEqualTo(4096);
            d.write(ByteBuffer.wrap(new byte[4096]).put(0, (byte) 9), 4096);
            d.flush();
            ByteBuffer b = ByteBuffer.allocate(4096);
            d.read(b, 4096);
            assertThat(b.get(0)).isEqualTo((byte) 9);
        }
    }
}
