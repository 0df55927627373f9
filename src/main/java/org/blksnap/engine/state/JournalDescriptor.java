package org.blksnap.engine.state;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * The layout of a tracker's write journal, {@code trackers/<device>/journal.0} and {@code journal.1}:
 * a sequence of fixed 32-byte records, appended. A region record (version 1) says "region R of the
 * device may have been written in epoch E"; a take record (version 2) says "epoch E began with a
 * take: the maps switched and the numbers became previous/active". Epochs alternate between the two
 * files by parity (epoch E goes to {@code journal.(E & 1)}); a file is emptied (truncated and
 * forced) before the epoch that uses it next begins, once the checkpoint of the epoch before is
 * durable. Big-endian.
 *
 * <pre>
 * Region record (32 bytes), version 1
 *   0         4       6   7   8                   16                  24        28        32
 *   +---------+-------+---+---+-------------------+-------------------+---------+---------+
 *   | u32 MAG | u16 1 | s | 0 | u64 epoch         | u64 region index  | u32 0   | u32 CRC |
 *   +---------+-------+---+---+-------------------+-------------------+---------+---------+
 *   s: u8 region shift (the region is bytes [index << s, (index + 1) << s) of the device)
 *
 * Take record (32 bytes), version 2
 *   0         4       6   7   8                   16        20        24        28        32
 *   +---------+-------+---+---+-------------------+---------+---------+---------+---------+
 *   | u32 MAG | u16 2 | 0 | 1 | u64 epoch         | u32 prev| u32 act | u32 gen | u32 CRC |
 *   +---------+-------+---+---+-------------------+---------+---------+---------+---------+
 *   prev, act: the snapshot numbers right after the switch (act = prev + 1)
 *   gen: UUID.hashCode() of the generation, i.e. (int) (h >>> 32) ^ (int) h with h = msb ^ lsb
 *
 *   CRC (both): CRC32C of bytes [0, 28)
 * </pre>
 *
 * <p>A reader takes records from the start and stops at the first one that is short, has another
 * magic or fails its CRC: a crash can only tear the batch being appended, whose writers were not
 * acknowledged yet, and everything after a torn record is of that batch or later. A record whose
 * magic and CRC are right but whose version is unknown, or whose fields are impossible, was not
 * torn: it was written so, by a newer blksnapd or by someone else. Stopping there would drop the
 * regions after it and under-report, so the reader refuses the journal instead
 * ({@link StateCorruptException}; recovery then starts a new generation). (The reader of version 1,
 * written before this rule, stops at the first take record: a journal holding one needs this
 * version or a newer one to be recovered.)
 */
final class JournalDescriptor {
    private JournalDescriptor() {
    }

    /** "BSJR". */
    static final int MAGIC = 0x42534A52;
    /** Version of a region record. */
    static final int VERSION = 1;
    /** Version of a take record (its kind byte is {@link #KIND_TAKE}). */
    static final int TAKE_VERSION = 2;
    static final int KIND_TAKE = 1;

    static final int MAGIC_OFFSET = 0;
    static final int VERSION_OFFSET = 4;
    static final int REGION_SHIFT_OFFSET = 6;
    static final int KIND_OFFSET = 7;
    static final int EPOCH_OFFSET = 8;
    static final int REGION_OFFSET = 16;
    static final int PREVIOUS_OFFSET = 16;
    static final int ACTIVE_OFFSET = 20;
    static final int GENERATION_OFFSET = 24;
    static final int CRC_OFFSET = 28;
    static final int RECORD_BYTES = 32;
    /** Largest journal file read (1 GiB of records): bounds the allocation of a reader. */
    static final long MAX_FILE_BYTES = 1L << 30;

    /** A journal record: a region written, or a take. */
    sealed interface Record permits Entry, Take {
        long epoch();
    }

    /**
     * A region record.
     *
     * @param regionShift log2 of the region size in bytes at the time it was written
     */
    record Entry(long epoch, long regionIndex, int regionShift) implements Record {
        /** First byte of the region. */
        long offsetBytes() {
            return regionIndex << regionShift;
        }

        long lengthBytes() {
            return 1L << regionShift;
        }
    }

    /**
     * A take record: epoch {@code epoch} began with the switch of a take, after which the numbers
     * were {@code previous} and {@code active} in the generation whose {@code UUID.hashCode()} is
     * {@code generationHash}.
     */
    record Take(long epoch, int previous, int active, int generationHash) implements Record {
    }

    /** Puts {@code r} at {@code dst}'s position and advances it by {@link #RECORD_BYTES}. */
    static void put(ByteBuffer dst, Record r) {
        switch (r) {
            case Entry e -> put(dst, e);
            case Take t -> put(dst, t);
        }
    }

    private static void put(ByteBuffer dst, Take t) {
        int at = dst.position();
        ByteBuffer b = dst.duplicate().order(ByteOrder.BIG_ENDIAN);
        b.putInt(at + MAGIC_OFFSET, MAGIC)
                .putShort(at + VERSION_OFFSET, (short) TAKE_VERSION)
                .put(at + REGION_SHIFT_OFFSET, (byte) 0)
                .put(at + KIND_OFFSET, (byte) KIND_TAKE)
                .putLong(at + EPOCH_OFFSET, t.epoch())
                .putInt(at + PREVIOUS_OFFSET, t.previous())
                .putInt(at + ACTIVE_OFFSET, t.active())
                .putInt(at + GENERATION_OFFSET, t.generationHash());
        seal(b, at);
        dst.position(at + RECORD_BYTES);
    }

    private static void put(ByteBuffer dst, Entry e) {
        int at = dst.position();
        ByteBuffer b = dst.duplicate().order(ByteOrder.BIG_ENDIAN);
        b.putInt(at + MAGIC_OFFSET, MAGIC)
                .putShort(at + VERSION_OFFSET, (short) VERSION)
                .put(at + REGION_SHIFT_OFFSET, (byte) e.regionShift())
                .put(at + REGION_SHIFT_OFFSET + 1, (byte) 0)
                .putLong(at + EPOCH_OFFSET, e.epoch())
                .putLong(at + REGION_OFFSET, e.regionIndex())
                .putInt(at + REGION_OFFSET + 8, 0);
        seal(b, at);
        dst.position(at + RECORD_BYTES);
    }

    /** The region records of {@code records}, in order. */
    static List<Entry> regions(List<Record> records) {
        List<Entry> out = new ArrayList<>();
        for (Record r : records) {
            if (r instanceof Entry e) {
                out.add(e);
            }
        }
        return out;
    }

    /**
     * The valid records of a journal file's content, in order, up to the first one that is short,
     * of another magic, or fails its CRC (a torn tail).
     *
     * @param where the file, for the message
     * @throws StateCorruptException a record whose magic and CRC are right is of an unknown version or
     *     holds impossible fields: it was not torn, and the records after it cannot be dropped
     */
    static List<Record> scan(ByteBuffer content, String where) throws StateCorruptException {
        ByteBuffer b = content.duplicate().order(ByteOrder.BIG_ENDIAN);
        List<Record> out = new ArrayList<>();
        int start = b.position();
        for (int at = start; at + RECORD_BYTES <= b.limit(); at += RECORD_BYTES) {
            if (b.getInt(at + MAGIC_OFFSET) != MAGIC || b.getInt(at + CRC_OFFSET) != crc(b, at)) {
                break;
            }
            int version = Short.toUnsignedInt(b.getShort(at + VERSION_OFFSET));
            String record = where + ": journal record " + ((at - start) / RECORD_BYTES) + " (byte " + (at - start) + ")";
            if (version == TAKE_VERSION) {
                int previous = b.getInt(at + PREVIOUS_OFFSET);
                int active = b.getInt(at + ACTIVE_OFFSET);
                if (b.get(at + KIND_OFFSET) != KIND_TAKE || previous < 0 || active != previous + 1) {
                    throw new StateCorruptException(record + ": a take record of kind " + b.get(at + KIND_OFFSET)
                            + " with snapshot numbers " + previous + "/" + active);
                }
                out.add(new Take(b.getLong(at + EPOCH_OFFSET), previous, active, b.getInt(at + GENERATION_OFFSET)));
            } else if (version == VERSION) {
                int shift = Byte.toUnsignedInt(b.get(at + REGION_SHIFT_OFFSET));
                long index = b.getLong(at + REGION_OFFSET);
                if (shift > 62 || index < 0 || index > (Long.MAX_VALUE >>> shift)) {
                    throw new StateCorruptException(record + ": region " + index + " of 2^" + shift + " bytes");
                }
                out.add(new Entry(b.getLong(at + EPOCH_OFFSET), index, shift));
            } else {
                throw new StateCorruptException(record + ": version " + version + " (this blksnapd reads versions "
                        + VERSION + " and " + TAKE_VERSION + "; the journal was written by a newer one)");
            }
        }
        return out;
    }

    /**
     * The records of journal file {@code p} ({@link #scan}), from its first {@link #MAX_FILE_BYTES};
     * none if it is missing.
     *
     * @throws IOException           if it cannot be read
     * @throws StateCorruptException as {@link #scan}
     */
    static List<Record> read(Path p) throws IOException, StateCorruptException {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate((int) Math.min(ch.size(), MAX_FILE_BYTES));
            StateFiles.readFully(ch, b, 0, p);
            return scan(b.flip(), p.toString());
        } catch (NoSuchFileException e) {
            return List.of();
        }
    }

    /** Writes the CRC of the record at byte {@code at} of {@code b} over what it holds now. */
    static void seal(ByteBuffer b, int at) {
        b.duplicate().order(ByteOrder.BIG_ENDIAN).putInt(at + CRC_OFFSET, crc(b, at));
    }

    private static int crc(ByteBuffer b, int at) {
        CRC32C c = new CRC32C();
        c.update(b.duplicate().clear().position(at).limit(at + CRC_OFFSET));
        return (int) c.getValue();
    }
}
