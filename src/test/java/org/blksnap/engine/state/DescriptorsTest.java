package org.blksnap.engine.state;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Random;
import java.util.UUID;
import java.util.function.Consumer;
import java.util.zip.CRC32C;
import org.blksnap.engine.GenerationReason;
import org.blksnap.engine.tracker.CbtMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The on-disk layouts: each round-trips every field, and every kind of damage is refused with a
 * message naming the file and what is wrong (never an unchecked exception, never a wrong value).
 */
class DescriptorsTest {
    @TempDir
    Path dir;

    /** 200 000 blocks: four 64 KiB pages per map, the last one short. */
    static Checkpoint sample(boolean clean) {
        int blocks = 200_000;
        long capacity = (long) blocks << 16;
        byte[] w = new byte[blocks];
        byte[] r = new byte[blocks];
        Random rnd = new Random(7);
        rnd.nextBytes(w);
        rnd.nextBytes(r);
        CbtMap.Saved m = new CbtMap.Saved("disk-0.a_b", UUID.randomUUID(), 41, 42, 16, capacity,
                GenerationReason.BACKING_CHANGED, "st_ino 5 -> 6 (é)", w, r);
        BackingIdentity id = clean ? new BackingIdentity(BackingIdentity.Kind.FILE, capacity, 2049, 123456, 0,
                1_700_000_000_123_456_789L, 1_700_000_001_987_654_321L) : null;
        return new Checkpoint(m, 77, clean, id);
    }

    private Path write(Checkpoint c) throws Exception {
        Path p = dir.resolve("checkpoint");
        Files.deleteIfExists(p);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            StateFiles.writeSkippingZeros(ch, CheckpointDescriptor.encodeParts(c), p); // as the engine writes it
        }
        return p;
    }

    private static Checkpoint read(Path p) throws Exception {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            return CheckpointDescriptor.decode(ch, p);
        }
    }

    private static void assertSame(Checkpoint a, Checkpoint b) {
        assertThat(b.epoch()).isEqualTo(a.epoch());
        assertThat(b.clean()).isEqualTo(a.clean());
        assertThat(b.identity()).isEqualTo(a.identity());
        CbtMap.Saved x = a.map();
        CbtMap.Saved y = b.map();
        assertThat(List.of(y.device(), y.generationId(), y.previous(), y.active(), y.blockShift(), y.capacityBytes(),
                y.reason(), y.detail())).isEqualTo(List.of(x.device(), x.generationId(), x.previous(), x.active(),
                x.blockShift(), x.capacityBytes(), x.reason(), x.detail()));
        assertThat(y.writeMap()).isEqualTo(x.writeMap());
        assertThat(y.readMap()).isEqualTo(x.readMap());
    }

    @Test
    void aCleanCheckpointRoundTripsEveryFieldIncludingTheBackingIdentity() throws Exception {
        Checkpoint c = sample(true);
        assertSame(c, read(write(c)));
    }

    @Test
    void aRunningCheckpointRoundTripsWithoutAnIdentity() throws Exception {
        Checkpoint c = sample(false);
        Checkpoint back = read(write(c));
        assertSame(c, back);
        assertThat(back.identity()).isNull();
    }

    /**
     * A running checkpoint is version 2, so that a build from before take records (whose checkpoint
     * reader refuses any version but 1) recovers nothing rather than replay a journal whose take
     * records it would stop at; a clean one stays version 1 (nothing is replayed after it), and a
     * running one of version 1 (written by such a build: the upgrade) is still read.
     */
    @Test
    void aRunningCheckpointIsVersion2ACleanOneVersion1AndARunningVersion1IsStillRead() throws Exception {
        assertThat(ByteBuffer.wrap(Files.readAllBytes(write(sample(true)))).getShort(CheckpointDescriptor.VERSION_OFFSET))
                .isEqualTo((short) 1);
        Checkpoint running = sample(false);
        Path p = write(running); // the same file, rewritten
        assertThat(ByteBuffer.wrap(Files.readAllBytes(p)).getShort(CheckpointDescriptor.VERSION_OFFSET)).isEqualTo((short) 2);
        resealed(p, b -> b.putShort(CheckpointDescriptor.VERSION_OFFSET, (short) 1));
        assertSame(running, read(p));
        resealed(p, b -> b.putShort(CheckpointDescriptor.VERSION_OFFSET, (short) 2)
                .putShort(CheckpointDescriptor.FLAGS_OFFSET, (short) CheckpointDescriptor.FLAG_CLEAN));
        assertThatThrownBy(() -> read(p)).isInstanceOf(StateCorruptException.class)
                .hasMessageContaining("version 2 (running) with the clean flag");
    }

    /** Changes the fixed header of checkpoint {@code p} and writes its header CRC again. */
    private static void resealed(Path p, Consumer<ByteBuffer> change) throws Exception {
        byte[] bytes = Files.readAllBytes(p);
        ByteBuffer b = ByteBuffer.wrap(bytes);
        change.accept(b);
        int header = b.getInt(CheckpointDescriptor.HEADER_LENGTH_OFFSET);
        CRC32C crc = new CRC32C();
        crc.update(bytes, 0, header - 4);
        b.putInt(header - 4, (int) crc.getValue());
        Files.write(p, bytes);
    }

    @Test
    void theFileHasExactlyTheLengthItsHeaderGives() throws Exception {
        Path p = write(sample(false));
        int header = ByteBuffer.wrap(Files.readAllBytes(p)).getInt(CheckpointDescriptor.HEADER_LENGTH_OFFSET);
        assertThat(Files.size(p)).isEqualTo(CheckpointDescriptor.fileLength(header, 200_000, CheckpointDescriptor.PAGE_BYTES))
                .isEqualTo(header + 400_000L + 4 * 2 * 4);
    }

    private String damaged(java.util.function.Consumer<byte[]> damage) throws Exception {
        Path p = write(sample(false));
        byte[] b = Files.readAllBytes(p);
        damage.accept(b);
        Files.write(p, b);
        assertThatThrownBy(() -> read(p)).isInstanceOf(StateCorruptException.class);
        try {
            read(p);
            throw new AssertionError("unreachable");
        } catch (StateCorruptException e) {
            assertThat(e.getMessage()).startsWith(p.toString());
            return e.getMessage();
        }
    }

    @Test
    void everyByteOfTheHeaderIsCoveredByItsCrc() throws Exception {
        Path p = write(sample(false));
        int header = ByteBuffer.wrap(Files.readAllBytes(p)).getInt(CheckpointDescriptor.HEADER_LENGTH_OFFSET);
        for (int i = 0; i < header; i++) {
            final int at = i;
            String why = damaged(b -> b[at] ^= 0x10);
            assertThat(why).as("byte %d", at).containsAnyOf("CRC32C", "magic", "version", "header length", "truncated",
                    "too long");
        }
    }

    @Test
    void aFlippedByteInAPageOfEitherMapNamesThatPage() throws Exception {
        Path p = write(sample(false));
        int header = ByteBuffer.wrap(Files.readAllBytes(p)).getInt(CheckpointDescriptor.HEADER_LENGTH_OFFSET);
        assertThat(damaged(b -> b[header + 3 * 65536 + 5] ^= 1)).contains("page 3 of the write map");
        assertThat(damaged(b -> b[header + 200_000 + 65536] ^= 1)).contains("page 1 of the read map");
        assertThat(damaged(b -> b[b.length - 1] ^= 1)).contains("page 3 of the read map");
    }

    @Test
    void truncatedOrExtendedFilesAndUnknownVersionsAreRefused() throws Exception {
        Path p = write(sample(false));
        byte[] full = Files.readAllBytes(p);
        for (int len : new int[] {0, 7, 100, 300, full.length / 2, full.length - 1}) {
            Files.write(p, java.util.Arrays.copyOf(full, len));
            assertThatThrownBy(() -> read(p)).as("cut at %d", len).isInstanceOf(StateCorruptException.class)
                    .hasMessageContaining("truncated");
        }
        Files.write(p, java.util.Arrays.copyOf(full, full.length + 1));
        assertThatThrownBy(() -> read(p)).isInstanceOf(StateCorruptException.class).hasMessageContaining("too long");
        assertThat(damaged(b -> b[CheckpointDescriptor.VERSION_OFFSET + 1] = 3)).contains("unknown version 3");
    }

    @Test
    void journalRecordsRoundTripAndAReaderStopsAtTheFirstTornRecordAndRefusesAnUnknownOne() throws Exception {
        ByteBuffer b = ByteBuffer.allocate(10 * JournalDescriptor.RECORD_BYTES);
        JournalDescriptor.Take take = new JournalDescriptor.Take(105, 41, 42, UUID.randomUUID().hashCode());
        for (int i = 0; i < 10; i++) {
            JournalDescriptor.put(b, i == 5 ? take : new JournalDescriptor.Entry(100 + i, 1000L * i, 26));
        }
        b.flip();
        List<JournalDescriptor.Record> all = JournalDescriptor.scan(b, "j");
        assertThat(all).hasSize(10);
        assertThat(all.get(3)).isEqualTo(new JournalDescriptor.Entry(103, 3000, 26));
        assertThat(((JournalDescriptor.Entry) all.get(3)).offsetBytes()).isEqualTo(3000L << 26);
        assertThat(all.get(5)).isEqualTo(take);
        assertThat(JournalDescriptor.regions(all)).hasSize(9).contains((JournalDescriptor.Entry) all.get(6));
        // a take record is version 2: a reader of version 1 stops there rather than misread it as a region
        assertThat(Short.toUnsignedInt(b.getShort(5 * 32 + JournalDescriptor.VERSION_OFFSET))).isEqualTo(2);
        // one flipped bit in the take record: the reader stops there too
        for (int bit = 0; bit < 32 * 8; bit++) {
            ByteBuffer c = ByteBuffer.allocate(b.limit()).put(b.duplicate()).flip();
            int at = 5 * 32 + bit / 8;
            c.put(at, (byte) (c.get(at) ^ (1 << (bit % 8))));
            assertThat(JournalDescriptor.scan(c, "j")).as("take record, bit %d", bit).hasSize(5);
        }
        // a torn tail: only whole records count
        assertThat(JournalDescriptor.scan(b.duplicate().limit(7 * 32 + 31), "j")).hasSize(7);
        // one flipped bit in record 4: the reader stops there, records after it are not trusted
        for (int bit = 0; bit < 32 * 8; bit++) {
            ByteBuffer c = ByteBuffer.allocate(b.limit()).put(b.duplicate()).flip();
            int at = 4 * 32 + bit / 8;
            c.put(at, (byte) (c.get(at) ^ (1 << (bit % 8))));
            assertThat(JournalDescriptor.scan(c, "j")).as("bit %d", bit).hasSize(4);
        }
        // zeros (a hole after a truncation) are not records
        assertThat(JournalDescriptor.scan(ByteBuffer.allocate(64), "j")).isEmpty();
        // a record that was not torn (magic and CRC right) but is of an unknown version or impossible:
        // refused, since dropping the records after it would under-report
        assertThat(refused(b, 4, c -> c.putShort(4 * 32 + JournalDescriptor.VERSION_OFFSET, (short) 3)))
                .contains("j: journal record 4 (byte 128): version 3").contains("written by a newer one");
        assertThat(refused(b, 5, c -> c.putInt(5 * 32 + JournalDescriptor.ACTIVE_OFFSET, 44)))
                .contains("journal record 5").contains("snapshot numbers 41/44");
        assertThat(refused(b, 5, c -> c.put(5 * 32 + JournalDescriptor.KIND_OFFSET, (byte) 2)))
                .contains("a take record of kind 2");
        assertThat(refused(b, 2, c -> c.put(2 * 32 + JournalDescriptor.REGION_SHIFT_OFFSET, (byte) 63)))
                .contains("journal record 2").contains("of 2^63 bytes");
        assertThat(refused(b, 2, c -> c.putLong(2 * 32 + JournalDescriptor.REGION_OFFSET, -1)))
                .contains("region -1 of 2^26 bytes");
    }

    /** The message of the refusal of {@code b} with record {@code r} changed by {@code change} and resealed. */
    private static String refused(ByteBuffer b, int r, Consumer<ByteBuffer> change) {
        ByteBuffer c = ByteBuffer.allocate(b.limit()).put(b.duplicate()).flip();
        change.accept(c);
        JournalDescriptor.seal(c, r * JournalDescriptor.RECORD_BYTES);
        return org.assertj.core.api.Assertions.catchThrowableOfType(StateCorruptException.class,
                () -> JournalDescriptor.scan(c, "j")).getMessage();
    }

    @Test
    void theStorageLedgerRoundTripsAndRefusesDamage() throws Exception {
        List<StorageLedgerDescriptor.Entry> entries = List.of(
                new StorageLedgerDescriptor.Entry(UUID.randomUUID().toString(), "/tmp/a b/ds#0", true),
                new StorageLedgerDescriptor.Entry(UUID.randomUUID().toString(), "/dev/loop7", false));
        ByteBuffer b = StorageLedgerDescriptor.encode(entries);
        assertThat(StorageLedgerDescriptor.decode(b, "ledger")).isEqualTo(entries);
        assertThat(StorageLedgerDescriptor.decode(StorageLedgerDescriptor.encode(List.of()), "ledger")).isEmpty();
        for (int i = 0; i < b.limit(); i++) {
            ByteBuffer c = ByteBuffer.allocate(b.limit()).put(b.duplicate()).flip();
            c.put(i, (byte) (c.get(i) ^ 0x40));
            assertThatThrownBy(() -> StorageLedgerDescriptor.decode(c, "ledger")).as("byte %d", i)
                    .isInstanceOf(StateCorruptException.class);
        }
        assertThatThrownBy(() -> StorageLedgerDescriptor.decode(b.duplicate().limit(b.limit() - 1), "ledger"))
                .isInstanceOf(StateCorruptException.class).hasMessageContaining("truncated");
    }
}
