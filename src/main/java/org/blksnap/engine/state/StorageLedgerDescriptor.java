package org.blksnap.engine.state;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * The layout of {@code storage-ledger}, version 1: the difference-storage files of the live
 * snapshots, rewritten whole (new file, force, rename, force the directory) at every change.
 * Big-endian.
 *
 * <pre>
 * Header (16 bytes)
 *   0         4       6       8         12        16
 *   +---------+-------+-------+---------+---------+
 *   | u32 MAG | u16 v | u16 0 | u32 n   | u32 CRC |   CRC: CRC32C of bytes [0, 12)
 *   +---------+-------+-------+---------+---------+
 * n entries, each
 *   +---+---+---------+---------------+---------+-----------------+---------+
 *   | c | 0 | u16 o   | owner (UTF-8) | u16 p   | path (UTF-8)    | u32 CRC |
 *   +---+---+---------+---------------+---------+-----------------+---------+
 *   c: u8 1 if the engine created the file, 0 if the user gave it; o, p: byte lengths
 *   CRC: CRC32C of the entry's bytes before it
 * </pre>
 */
final class StorageLedgerDescriptor {
    private StorageLedgerDescriptor() {
    }

    /** "BSSL". */
    static final int MAGIC = 0x4253534C;
    static final int VERSION = 1;
    static final int MAGIC_OFFSET = 0;
    static final int VERSION_OFFSET = 4;
    static final int COUNT_OFFSET = 8;
    static final int HEADER_CRC_OFFSET = 12;
    static final int HEADER_BYTES = 16;
    static final int ENTRY_CREATED_OFFSET = 0;
    static final int ENTRY_OWNER_LENGTH_OFFSET = 2;
    static final int ENTRY_OWNER_OFFSET = 4;
    static final int MAX_OWNER_BYTES = 64;
    static final int MAX_PATH_BYTES = 4096;
    static final int MAX_ENTRIES = 1 << 16;
    /** Largest ledger file read: bounds the reader's allocation. */
    static final int MAX_FILE_BYTES = HEADER_BYTES + MAX_ENTRIES * (10 + MAX_OWNER_BYTES + MAX_PATH_BYTES);

    /**
     * A file of a live snapshot.
     *
     * @param owner   the snapshot id
     * @param path    absolute path
     * @param created whether the engine created it (deleted after a crash) or the user gave it (kept)
     */
    record Entry(String owner, String path, boolean created) {
    }

    static ByteBuffer encode(List<Entry> entries) {
        List<byte[][]> raw = new ArrayList<>();
        int size = HEADER_BYTES;
        for (Entry e : entries) {
            byte[] o = e.owner().getBytes(StandardCharsets.UTF_8);
            byte[] p = e.path().getBytes(StandardCharsets.UTF_8);
            if (o.length > MAX_OWNER_BYTES || p.length > MAX_PATH_BYTES) {
                throw new IllegalArgumentException("ledger entry too long: " + e);
            }
            raw.add(new byte[][] {o, p});
            size += 4 + o.length + 2 + p.length + 4;
        }
        ByteBuffer b = ByteBuffer.allocate(size).order(ByteOrder.BIG_ENDIAN);
        b.putInt(MAGIC_OFFSET, MAGIC).putShort(VERSION_OFFSET, (short) VERSION).putShort(VERSION_OFFSET + 2, (short) 0)
                .putInt(COUNT_OFFSET, entries.size());
        b.putInt(HEADER_CRC_OFFSET, crc(b, 0, HEADER_CRC_OFFSET));
        b.position(HEADER_BYTES);
        for (int i = 0; i < entries.size(); i++) {
            int start = b.position();
            byte[] o = raw.get(i)[0];
            byte[] p = raw.get(i)[1];
            b.put((byte) (entries.get(i).created() ? 1 : 0)).put((byte) 0).putShort((short) o.length).put(o)
                    .putShort((short) p.length).put(p);
            b.putInt(crc(b, start, b.position() - start));
        }
        return b.flip();
    }

    /** @throws StateCorruptException naming what is wrong */
    static List<Entry> decode(ByteBuffer content, String where) throws StateCorruptException {
        ByteBuffer b = content.duplicate().order(ByteOrder.BIG_ENDIAN);
        if (b.remaining() < HEADER_BYTES) {
            throw new StateCorruptException(where + ": truncated (" + b.remaining() + " bytes)");
        }
        int base = b.position();
        if (b.getInt(base + MAGIC_OFFSET) != MAGIC) {
            throw new StateCorruptException(where + ": bad magic");
        }
        int version = Short.toUnsignedInt(b.getShort(base + VERSION_OFFSET));
        if (version != VERSION) {
            throw new StateCorruptException(where + ": unknown version " + version);
        }
        if (b.getInt(base + HEADER_CRC_OFFSET) != crc(b, base, HEADER_CRC_OFFSET)) {
            throw new StateCorruptException(where + ": header CRC32C mismatch");
        }
        int n = b.getInt(base + COUNT_OFFSET);
        if (n < 0 || n > MAX_ENTRIES) {
            throw new StateCorruptException(where + ": " + n + " entries (at most " + MAX_ENTRIES + ")");
        }
        b.position(base + HEADER_BYTES);
        List<Entry> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int start = b.position();
            try {
                boolean created = b.get() == 1;
                b.get();
                int ol = Short.toUnsignedInt(b.getShort());
                if (ol > MAX_OWNER_BYTES) {
                    throw new StateCorruptException(where + ": entry " + i + ": owner of " + ol + " bytes");
                }
                byte[] o = new byte[ol];
                b.get(o);
                int pl = Short.toUnsignedInt(b.getShort());
                if (pl > MAX_PATH_BYTES) {
                    throw new StateCorruptException(where + ": entry " + i + ": path of " + pl + " bytes");
                }
                byte[] p = new byte[pl];
                b.get(p);
                int expect = crc(b, start, b.position() - start);
                if (b.getInt() != expect) {
                    throw new StateCorruptException(where + ": entry " + i + ": CRC32C mismatch");
                }
                out.add(new Entry(new String(o, StandardCharsets.UTF_8), new String(p, StandardCharsets.UTF_8), created));
            } catch (java.nio.BufferUnderflowException e) {
                throw new StateCorruptException(where + ": truncated in entry " + i);
            }
        }
        return out;
    }

    private static int crc(ByteBuffer b, int from, int length) {
        CRC32C c = new CRC32C();
        c.update(b.duplicate().clear().position(from).limit(from + length));
        return (int) c.getValue();
    }
}
