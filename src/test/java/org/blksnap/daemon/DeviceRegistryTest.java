package org.blksnap.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The registry file: what is written is read back exactly, and nothing else is ever read as valid
 * (every truncation, every single flipped bit, another version, lengths that lie), and an update is
 * all or nothing on disk.
 */
class DeviceRegistryTest {
    @TempDir
    Path dir;

    private static final List<DeviceRegistry.Entry> ENTRIES = List.of(
            new DeviceRegistry.Entry("d1", Path.of("/srv/d1.img"), 8L << 20),
            new DeviceRegistry.Entry("vm-disk.2", Path.of("/var/lib/some dir/disk 2.raw"), 1L << 40),
            new DeviceRegistry.Entry("nvme", Path.of("/dev/nvme0n1"), 0));

    private static byte[] bytes(List<DeviceRegistry.Entry> entries) {
        ByteBuffer b = DeviceRegistry.encode(entries);
        byte[] a = new byte[b.remaining()];
        b.get(a);
        return a;
    }

    @Test
    void whatIsWrittenIsReadBackExactly() throws Exception {
        assertThat(DeviceRegistry.decode(bytes(ENTRIES), dir)).isEqualTo(ENTRIES);
        assertThat(DeviceRegistry.decode(bytes(List.of()), dir)).isEmpty();
        assertThat(bytes(List.of())).hasSize(DeviceRegistryDescriptor.HEADER_LENGTH + DeviceRegistryDescriptor.CRC_LENGTH);
    }

    @Test
    void readOnlyEntriesAddEntryFlagsAndARegistryWithoutThemKeepsTheOriginalLayout() throws Exception {
        List<DeviceRegistry.Entry> withRo = List.of(ENTRIES.get(0), new DeviceRegistry.Entry("ro", Path.of("/srv/ro.img"),
                4L << 20, true));
        byte[] b = bytes(withRo);
        assertThat(DeviceRegistry.decode(b, dir)).isEqualTo(withRo);
        assertThat(java.nio.ByteBuffer.wrap(b).getShort(DeviceRegistryDescriptor.FLAGS_OFFSET))
                .isEqualTo((short) DeviceRegistryDescriptor.FLAG_ENTRY_FLAGS);
        assertThat(java.nio.ByteBuffer.wrap(bytes(ENTRIES)).getShort(DeviceRegistryDescriptor.FLAGS_OFFSET)).isZero();
        for (int length = 0; length < b.length; length++) {
            byte[] torn = Arrays.copyOf(b, length);
            assertThatThrownBy(() -> DeviceRegistry.decode(torn, dir)).isInstanceOf(DeviceRegistry.CorruptException.class);
        }
    }

    @Test
    void everyTruncationAndEveryExtensionIsRefused() {
        byte[] good = bytes(ENTRIES);
        for (int length = 0; length < good.length; length++) {
            byte[] torn = Arrays.copyOf(good, length);
            assertThatThrownBy(() -> DeviceRegistry.decode(torn, dir)).as("first %d bytes", torn.length)
                    .isInstanceOf(DeviceRegistry.CorruptException.class);
        }
        byte[] longer = Arrays.copyOf(good, good.length + 1);
        assertThatThrownBy(() -> DeviceRegistry.decode(longer, dir)).isInstanceOf(DeviceRegistry.CorruptException.class)
                .hasMessageContaining("truncated or extended");
    }

    @Test
    void everySingleFlippedBitIsRefused() {
        byte[] good = bytes(ENTRIES);
        for (int bit = 0; bit < good.length * 8; bit++) {
            byte[] bad = good.clone();
            bad[bit / 8] ^= (byte) (1 << (bit % 8));
            assertThatThrownBy(() -> DeviceRegistry.decode(bad, dir)).as("bit %d", bit)
                    .isInstanceOf(DeviceRegistry.CorruptException.class)
                    .hasMessageStartingWith("the device registry " + dir + " cannot be read: ");
        }
    }

    @Test
    void anotherVersionIsRefusedSayingWhichOne() {
        ByteBuffer b = DeviceRegistry.encode(ENTRIES);
        b.putShort(DeviceRegistryDescriptor.VERSION_OFFSET, (short) 2);
        assertThatThrownBy(() -> DeviceRegistry.decode(b.array(), dir)).isInstanceOf(DeviceRegistry.CorruptException.class)
                .hasMessageContaining("layout version 2; this blksnapd reads version 1 (written by a newer blksnapd?)");
    }

    @Test
    void lengthsAreBoundedBeforeAnythingIsAllocatedOrTrusted() throws Exception {
        ByteBuffer b = DeviceRegistry.encode(ENTRIES);
        b.putInt(DeviceRegistryDescriptor.BODY_LENGTH_OFFSET, Integer.MAX_VALUE);
        assertThatThrownBy(() -> DeviceRegistry.decode(b.array(), dir)).isInstanceOf(DeviceRegistry.CorruptException.class)
                .hasMessageContaining("truncated or extended");
        Path huge = dir.resolve("devices");
        try (var raf = new java.io.RandomAccessFile(huge.toFile(), "rw")) {
            raf.setLength(DeviceRegistryDescriptor.MAX_FILE_BYTES + 1L);
        }
        assertThatThrownBy(() -> new DeviceRegistry(dir).load()).isInstanceOf(DeviceRegistry.CorruptException.class)
                .hasMessageContaining("more than a device registry can be");
        assertThatThrownBy(() -> DeviceRegistry.encode(List.of(new DeviceRegistry.Entry("x".repeat(256), Path.of("/x"), 0))))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("must be 1 to 255 bytes");
        List<DeviceRegistry.Entry> many = new ArrayList<>();
        for (int i = 0; i <= DeviceRegistryDescriptor.MAX_ENTRIES; i++) {
            many.add(new DeviceRegistry.Entry("d" + i, Path.of("/d" + i), 0));
        }
        assertThatThrownBy(() -> DeviceRegistry.encode(many)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("entries (4097) must be <= 4096");
    }

    @Test
    void anUpdateIsAllOrNothingOnDiskAndATornUpdateIsDroppedAtTheNextLoad() throws Exception {
        DeviceRegistry r = new DeviceRegistry(dir);
        assertThat(r.load()).as("no file: no devices").isEmpty();
        r.prepare(ENTRIES).commit();
        assertThat(r.load()).isEqualTo(ENTRIES);
        assertThat(dir.resolve("devices.new")).doesNotExist();
        assertThat(Files.getPosixFilePermissions(dir.resolve("devices"))).extracting(Object::toString)
                .containsExactlyInAnyOrder("OWNER_READ", "OWNER_WRITE");

        DeviceRegistry.Pending dropped = r.prepare(ENTRIES.subList(0, 1));
        assertThat(dir.resolve("devices.new")).exists();
        assertThat(r.load()).as("not in place before the commit").isEqualTo(ENTRIES);
        dropped.abort();
        assertThat(dir.resolve("devices.new")).doesNotExist();
        assertThat(new DeviceRegistry(dir).load()).isEqualTo(ENTRIES);

        Files.write(dir.resolve("devices.new"), Arrays.copyOf(bytes(List.of()), 9));
        assertThat(new DeviceRegistry(dir).load()).isEqualTo(ENTRIES);
        assertThat(dir.resolve("devices.new")).as("a torn update is deleted unread").doesNotExist();
    }
}
