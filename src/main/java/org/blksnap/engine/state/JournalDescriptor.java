package org.blksnap.engine.state;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * The layout of a tracker's write journal, {@code trackers/<device>/journal.0} and {@code journal.1},
 * version 1: a sequence of fixed 32-byte records, appended, each saying "region R of the device may
 * have been written in epoch E". Epochs alternate between the two files by parity (epoch E goes to
 * {@code journal.(E & 1)}); a file is emptied (truncated and forced) before the epoch that uses it
 * next begins, once the checkpoint of the epoch before is durable. Big-endian.
 *
 * <pre>
 * Record (32 bytes)
 *   0         4       6   7   8                   16                  24        28        32
 *   +---------+-------+---+---+-------------------+-------------------+---------+---------+
 *   | u32 MAG | u16 v | s | 0 | u64 epoch         | u64 region index  | u32 0   | u32 CRC |
 *   +---------+-------+---+---+-------------------+-------------------+---------+---------+
 *   s: u8 region shift (the region is bytes [index << s, (index + 1) << s) of the device)
 *   CRC: CRC32C of bytes [0, 28)
 * </pre>
 *
 * <p>A reader takes records from the start and stops at the first one that is short, has another
 * magic or version, or fails its CRC: a crash can only tear the batch being appended, whose writers
 * were not acknowledged yet, and everything after a torn record is of that batch or later.
 */
final class JournalDescriptor {
    private JournalDescriptor() {
    }

    /** "BSJR". */
    static final int MAGIC = 0x42534A52;
    static final int VERSION = 1;

    static final int MAGIC_OFFSET = 0;
    static final int VERSION_OFFSET = 4;
    static final int REGION_SHIFT_OFFSET = 6;
    static final int EPOCH_OFFSET = 8;
    static final int REGION_OFFSET = 16;
    static final int CRC_OFFSET = 28;
    static final int RECORD_BYTES = 32;
    /** Largest journal file read (1 GiB of records): bounds the allocation of a reader. */
    static final long MAX_FILE_BYTES = 1L << 30;

    /**
     * A journal record.
     *
     * @param regionShift log2 of the region size in bytes at the time it was written
     */
    record Entry(long epoch, long regionIndex, int regionShift) {
        /** First byte of the region. */
        long offsetBytes() {
            return regionIndex << regionShift;
        }

        long lengthBytes() {
            return 1L << regionShift;
        }
    }

    /** Puts the record for {@code e} at {@code dst}'s position and advances it by {@link #RECORD_BYTES}. */
    static void put(ByteBuffer dst, Entry e) {
        int at = dst.position();
        ByteBuffer b = dst.duplicate().order(ByteOrder.BIG_ENDIAN);
        b.putInt(at + MAGIC_OFFSET, MAGIC)
                .putShort(at + VERSION_OFFSET, (short) VERSION)
                .put(at + REGION_SHIFT_OFFSET, (byte) e.regionShift())
                .put(at + REGION_SHIFT_OFFSET + 1, (byte) 0)
                .putLong(at + EPOCH_OFFSET, e.epoch())
                .putLong(at + REGION_OFFSET, e.regionIndex())
                .putInt(at + REGION_OFFSET + 8, 0);
        b.putInt(at + CRC_OFFSET, crc(b, at));
        dst.position(at + RECORD_BYTES);
    }

    /**
     * The valid records of a journal file's content, in order, up to the first one that is short or
     * invalid.
     */
    static List<Entry> scan(ByteBuffer content) {
        ByteBuffer b = content.duplicate().order(ByteOrder.BIG_ENDIAN);
        List<Entry> out = new ArrayList<>();
        for (int at = b.position(); at + RECORD_BYTES <= b.limit(); at += RECORD_BYTES) {
            if (b.getInt(at + MAGIC_OFFSET) != MAGIC || Short.toUnsignedInt(b.getShort(at + VERSION_OFFSET)) != VERSION
                    || b.getInt(at + CRC_OFFSET) != crc(b, at)) {
                break;
            }
            int shift = Byte.toUnsignedInt(b.get(at + REGION_SHIFT_OFFSET));
            long index = b.getLong(at + REGION_OFFSET);
            if (shift > 62 || index < 0 || index > (Long.MAX_VALUE >>> shift)) {
                break;
            }
            out.add(new Entry(b.getLong(at + EPOCH_OFFSET), index, shift));
        }
        return out;
    }

    private static int crc(ByteBuffer b, int at) {
        CRC32C c = new CRC32C();
        c.update(b.duplicate().clear().position(at).limit(at + CRC_OFFSET));
        return (int) c.getValue();
    }
}
