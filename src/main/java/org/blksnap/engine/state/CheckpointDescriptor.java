package org.blksnap.engine.state;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.UUID;
import java.util.zip.CRC32C;
import org.blksnap.engine.GenerationReason;
import org.blksnap.engine.tracker.CbtMap;

/**
 * The layout of a tracker's checkpoint file, {@code trackers/<device>/checkpoint}, versions 1 and 2
 * (the same layout). All integers are big-endian. The file is written whole to
 * {@code checkpoint.tmp} (its all-zero 64 KiB pieces as holes, which read back as zeros:
 * {@link StateFiles#writeSkippingZeros}), forced, renamed over {@code checkpoint} and the directory
 * forced, so a torn write is never read as valid; every part
 * carries a CRC32C all the same (a bit flipped on disk, a file cut short by hand).
 *
 * <pre>
 * Header: fixed part (120 bytes), strings, CRC
 *   0                   8       10      12      16                  24                  32
 *   +-------------------+-------+-------+-------+-------------------+-------------------+
 *   | u64 magic         | u16 v | u16 f | u32 H | u64 epoch         | u64 capacityBytes |
 *   +-------------------+-------+-------+-------+-------------------+-------------------+
 *   32                                      48      52      56      60      64      68
 *   +---------------------------------------+-------+-------+-------+-------+-------+
 *   | generation UUID (u64 msb, u64 lsb)    | u32 p | u32 a | u32 s | u32 B | u32 P |
 *   +---------------------------------------+-------+-------+-------+-------+-------+
 *   68  72                  80                  88                  96
 *   +---+-------------------+-------------------+-------------------+
 *   | k | u64 id size       | u64 st_dev        | u64 st_ino        |   k: u8 identity kind,
 *   +---+-------------------+-------------------+-------------------+      3 bytes zero
 *   96                  104                 112                 120
 *   +-------------------+-------------------+-------------------+
 *   | u64 st_rdev       | u64 mtime ns      | u64 ctime ns      |
 *   +-------------------+-------------------+-------------------+
 *   120: u16 length + UTF-8 device name | u16 length + UTF-8 reason name | u16 length + UTF-8 detail
 *   H-4: u32 CRC32C of bytes [0, H-4)
 *
 * Body, from H
 *   write map: B bytes | read map: B bytes |
 *   page CRCs: u32 CRC32C of each P-byte page of the write map (the last may be shorter), then of
 *              each page of the read map
 *
 *   v: 1 for a clean checkpoint; 2 for a running one (its journals may hold take records, which a
 *      reader of version 1 would stop at: it refuses the checkpoint instead, and recovers nothing
 *      rather than under-report). Running checkpoints of builds before take records are version 1.
 *   f: bit 0 clean (written at a clean stop; identity fields valid); never set in version 2
 *   p, a: previous and active snapshot numbers (a = p + 1 < 256); s: tracking block shift;
 *   B: block count; P: page size, a power of two from 4 KiB to 1 MiB
 *   file length = H + 2B + 4 * 2 * ceil(B / P), exactly
 * </pre>
 */
final class CheckpointDescriptor {
    private CheckpointDescriptor() {
    }

    /** "BLKSNPCK". */
    static final long MAGIC = 0x424C4B534E50434BL;
    /** Version of a clean checkpoint (and of a running one written before take records existed). */
    static final int VERSION = 1;
    /**
     * Version of a running checkpoint: recovering from it needs the journal's take records
     * ({@link JournalDescriptor#TAKE_VERSION}), so a build that does not know them must refuse it.
     */
    static final int RUNNING_VERSION = 2;
    static final int FLAG_CLEAN = 1;

    static final int MAGIC_OFFSET = 0;
    static final int VERSION_OFFSET = 8;
    static final int FLAGS_OFFSET = 10;
    static final int HEADER_LENGTH_OFFSET = 12;
    static final int EPOCH_OFFSET = 16;
    static final int CAPACITY_OFFSET = 24;
    static final int GENERATION_MSB_OFFSET = 32;
    static final int GENERATION_LSB_OFFSET = 40;
    static final int PREVIOUS_OFFSET = 48;
    static final int ACTIVE_OFFSET = 52;
    static final int BLOCK_SHIFT_OFFSET = 56;
    static final int BLOCK_COUNT_OFFSET = 60;
    static final int PAGE_BYTES_OFFSET = 64;
    static final int IDENTITY_KIND_OFFSET = 68;
    static final int IDENTITY_SIZE_OFFSET = 72;
    static final int IDENTITY_DEV_OFFSET = 80;
    static final int IDENTITY_INO_OFFSET = 88;
    static final int IDENTITY_RDEV_OFFSET = 96;
    static final int IDENTITY_MTIME_OFFSET = 104;
    static final int IDENTITY_CTIME_OFFSET = 112;
    static final int STRINGS_OFFSET = 120;
    static final int CRC_BYTES = 4;

    /** Page of a map covered by one CRC. */
    static final int PAGE_BYTES = 64 << 10;
    static final int MIN_PAGE_BYTES = 4 << 10;
    static final int MAX_PAGE_BYTES = 1 << 20;
    /** Longest header accepted: bounds the allocation before the CRC is known. */
    static final int MAX_HEADER_BYTES = 16 << 10;
    static final int MAX_DEVICE_NAME_BYTES = 128;
    static final int MAX_REASON_BYTES = 64;
    static final int MAX_DETAIL_BYTES = 4096;
    /** Largest map accepted (as CbtMap allows). */
    static final long MAX_BLOCK_COUNT = Integer.MAX_VALUE - 8;

    /** Number of P-byte pages of a map of {@code blockCount} bytes. */
    static long pageCount(long blockCount, int pageBytes) {
        return (blockCount + pageBytes - 1) / pageBytes;
    }

    /** The exact length of a checkpoint with a header of {@code headerBytes}. */
    static long fileLength(int headerBytes, long blockCount, int pageBytes) {
        return headerBytes + 2 * blockCount + CRC_BYTES * 2 * pageCount(blockCount, pageBytes);
    }

    /**
     * The file for {@code c} as its consecutive parts, to write from position 0 without copying the
     * maps: the header, the write map and the read map (wrapping the arrays of {@code c.map()}, which
     * must not change while the parts are in use), and the pages' CRCs.
     */
    static ByteBuffer[] encodeParts(Checkpoint c) {
        CbtMap.Saved m = c.map();
        byte[] name = utf8(m.device(), MAX_DEVICE_NAME_BYTES);
        byte[] reason = utf8(m.reason().name(), MAX_REASON_BYTES);
        byte[] detail = utf8(m.detail(), MAX_DETAIL_BYTES);
        int header = STRINGS_OFFSET + 2 + name.length + 2 + reason.length + 2 + detail.length + CRC_BYTES;
        int blocks = m.writeMap().length;
        if (m.readMap().length != blocks) {
            throw new IllegalArgumentException("maps of " + blocks + " and " + m.readMap().length + " blocks");
        }
        long length = fileLength(header, blocks, PAGE_BYTES);
        ByteBuffer b = ByteBuffer.allocate(header).order(ByteOrder.BIG_ENDIAN);
        BackingIdentity id = c.identity() == null ? BackingIdentity.sizeOnly(0) : c.identity();
        b.putLong(MAGIC_OFFSET, MAGIC)
                .putShort(VERSION_OFFSET, (short) (c.clean() ? VERSION : RUNNING_VERSION))
                .putShort(FLAGS_OFFSET, (short) (c.clean() ? FLAG_CLEAN : 0))
                .putInt(HEADER_LENGTH_OFFSET, header)
                .putLong(EPOCH_OFFSET, c.epoch())
                .putLong(CAPACITY_OFFSET, m.capacityBytes())
                .putLong(GENERATION_MSB_OFFSET, m.generationId().getMostSignificantBits())
                .putLong(GENERATION_LSB_OFFSET, m.generationId().getLeastSignificantBits())
                .putInt(PREVIOUS_OFFSET, m.previous())
                .putInt(ACTIVE_OFFSET, m.active())
                .putInt(BLOCK_SHIFT_OFFSET, m.blockShift())
                .putInt(BLOCK_COUNT_OFFSET, blocks)
                .putInt(PAGE_BYTES_OFFSET, PAGE_BYTES)
                .put(IDENTITY_KIND_OFFSET, (byte) id.kind().ordinal())
                .putLong(IDENTITY_SIZE_OFFSET, id.sizeBytes())
                .putLong(IDENTITY_DEV_OFFSET, id.dev())
                .putLong(IDENTITY_INO_OFFSET, id.ino())
                .putLong(IDENTITY_RDEV_OFFSET, id.rdev())
                .putLong(IDENTITY_MTIME_OFFSET, id.mtimeNs())
                .putLong(IDENTITY_CTIME_OFFSET, id.ctimeNs());
        b.position(STRINGS_OFFSET);
        putString(b, name);
        putString(b, reason);
        putString(b, detail);
        b.putInt(crc(b, 0, header - CRC_BYTES));
        long pages = pageCount(blocks, PAGE_BYTES);
        ByteBuffer crcs = ByteBuffer.allocate(Math.toIntExact(2 * pages * CRC_BYTES)).order(ByteOrder.BIG_ENDIAN);
        for (byte[] map : new byte[][] {m.writeMap(), m.readMap()}) {
            ByteBuffer whole = ByteBuffer.wrap(map);
            for (long p = 0; p < pages; p++) {
                int from = (int) (p * PAGE_BYTES);
                int len = (int) Math.min(PAGE_BYTES, blocks - p * PAGE_BYTES);
                crcs.putInt(crc(whole, from, len));
            }
        }
        ByteBuffer[] parts = {b.flip(), ByteBuffer.wrap(m.writeMap()), ByteBuffer.wrap(m.readMap()), crcs.flip()};
        long encoded = 0;
        for (ByteBuffer p : parts) {
            encoded += p.remaining();
        }
        if (encoded != length) {
            throw new IllegalStateException("checkpoint of " + length + " bytes encoded as " + encoded);
        }
        return parts;
    }

    /**
     * Reads and checks the checkpoint at {@code path}: every length is bounded before anything is
     * allocated, the header and every page are checked against their CRC, the file must have exactly
     * the length its header gives.
     *
     * @throws StateCorruptException naming the file and what is wrong with it
     * @throws IOException           if it cannot be read at all
     */
    static Checkpoint decode(FileChannel ch, Path path) throws IOException, StateCorruptException {
        long size = ch.size();
        ByteBuffer fixed = ByteBuffer.allocate(STRINGS_OFFSET);
        if (!StateFiles.readFully(ch, fixed, 0, path)) {
            throw corrupt(path, "truncated: " + size + " bytes, shorter than the fixed header (" + STRINGS_OFFSET + ")");
        }
        if (fixed.getLong(MAGIC_OFFSET) != MAGIC) {
            throw corrupt(path, "bad magic 0x" + Long.toHexString(fixed.getLong(MAGIC_OFFSET)));
        }
        int version = Short.toUnsignedInt(fixed.getShort(VERSION_OFFSET));
        if (version != VERSION && version != RUNNING_VERSION) {
            throw corrupt(path, "unknown version " + version + " (this daemon reads versions " + VERSION + " and "
                    + RUNNING_VERSION + ")");
        }
        if (version == RUNNING_VERSION && (fixed.getShort(FLAGS_OFFSET) & FLAG_CLEAN) != 0) {
            throw corrupt(path, "a checkpoint of version " + RUNNING_VERSION + " (running) with the clean flag");
        }
        int header = fixed.getInt(HEADER_LENGTH_OFFSET);
        if (header < STRINGS_OFFSET + 6 + CRC_BYTES || header > MAX_HEADER_BYTES) {
            throw corrupt(path, "header length " + header + " outside " + (STRINGS_OFFSET + 6 + CRC_BYTES) + ".."
                    + MAX_HEADER_BYTES);
        }
        ByteBuffer h = ByteBuffer.allocate(header);
        if (!StateFiles.readFully(ch, h, 0, path)) {
            throw corrupt(path, "truncated in the header: " + size + " bytes, header of " + header);
        }
        int storedCrc = h.getInt(header - CRC_BYTES);
        if (crc(h, 0, header - CRC_BYTES) != storedCrc) {
            throw corrupt(path, "header CRC32C mismatch");
        }
        long blocks = Integer.toUnsignedLong(h.getInt(BLOCK_COUNT_OFFSET));
        int pageBytes = h.getInt(PAGE_BYTES_OFFSET);
        if (blocks > MAX_BLOCK_COUNT) {
            throw corrupt(path, "block count " + blocks + " above " + MAX_BLOCK_COUNT);
        }
        if (pageBytes < MIN_PAGE_BYTES || pageBytes > MAX_PAGE_BYTES || Integer.bitCount(pageBytes) != 1) {
            throw corrupt(path, "page size " + pageBytes + " is not a power of two from " + MIN_PAGE_BYTES + " to "
                    + MAX_PAGE_BYTES);
        }
        long expected = fileLength(header, blocks, pageBytes);
        if (size != expected) {
            throw corrupt(path, (size < expected ? "truncated" : "too long") + ": " + size + " bytes, the header says "
                    + expected);
        }
        int shift = h.getInt(BLOCK_SHIFT_OFFSET);
        if (shift < 9 || shift > CbtMap.MAX_BLOCK_SHIFT) {
            throw corrupt(path, "block shift " + shift + " outside 9.." + CbtMap.MAX_BLOCK_SHIFT);
        }
        h.position(STRINGS_OFFSET);
        String device = getString(h, MAX_DEVICE_NAME_BYTES, header, path, "device name");
        String reasonName = getString(h, MAX_REASON_BYTES, header, path, "reason");
        String detail = getString(h, MAX_DETAIL_BYTES, header, path, "detail");
        if (h.position() != header - CRC_BYTES) {
            throw corrupt(path, "header strings end at " + h.position() + ", the CRC is at " + (header - CRC_BYTES));
        }
        GenerationReason reason;
        try {
            reason = GenerationReason.valueOf(reasonName);
        } catch (IllegalArgumentException e) {
            throw corrupt(path, "unknown generation reason '" + reasonName + "'");
        }
        byte[] writeMap = new byte[(int) blocks];
        byte[] readMap = new byte[(int) blocks];
        long pages = pageCount(blocks, pageBytes);
        ByteBuffer crcs = ByteBuffer.allocate(Math.toIntExact(CRC_BYTES * 2 * pages));
        if (!StateFiles.readFully(ch, ByteBuffer.wrap(writeMap), header, path)
                || !StateFiles.readFully(ch, ByteBuffer.wrap(readMap), header + blocks, path)
                || !StateFiles.readFully(ch, crcs, header + 2 * blocks, path)) {
            throw corrupt(path, "truncated while reading the maps");
        }
        for (int map = 0; map < 2; map++) {
            byte[] data = map == 0 ? writeMap : readMap;
            for (long p = 0; p < pages; p++) {
                int from = (int) (p * pageBytes);
                int len = (int) Math.min(pageBytes, blocks - from);
                CRC32C c = new CRC32C();
                c.update(data, from, len);
                if ((int) c.getValue() != crcs.getInt((int) ((map * pages + p) * CRC_BYTES))) {
                    throw corrupt(path, "CRC32C mismatch in page " + p + " of the " + (map == 0 ? "write" : "read")
                            + " map (bytes " + (header + (long) map * blocks + from) + ".." + (header + (long) map * blocks
                            + from + len) + ")");
                }
            }
        }
        int kindOrdinal = Byte.toUnsignedInt(h.get(IDENTITY_KIND_OFFSET));
        if (kindOrdinal >= BackingIdentity.Kind.values().length) {
            throw corrupt(path, "unknown backing identity kind " + kindOrdinal);
        }
        boolean clean = (h.getShort(FLAGS_OFFSET) & FLAG_CLEAN) != 0;
        BackingIdentity identity = clean ? new BackingIdentity(BackingIdentity.Kind.values()[kindOrdinal],
                h.getLong(IDENTITY_SIZE_OFFSET), h.getLong(IDENTITY_DEV_OFFSET), h.getLong(IDENTITY_INO_OFFSET),
                h.getLong(IDENTITY_RDEV_OFFSET), h.getLong(IDENTITY_MTIME_OFFSET), h.getLong(IDENTITY_CTIME_OFFSET)) : null;
        CbtMap.Saved saved = new CbtMap.Saved(device, new UUID(h.getLong(GENERATION_MSB_OFFSET),
                h.getLong(GENERATION_LSB_OFFSET)), h.getInt(PREVIOUS_OFFSET), h.getInt(ACTIVE_OFFSET), shift,
                h.getLong(CAPACITY_OFFSET), reason, detail, writeMap, readMap);
        if (CbtMap.blockCount(saved.capacityBytes(), shift) != blocks) {
            throw corrupt(path, blocks + " blocks do not cover a capacity of " + saved.capacityBytes() + " bytes at "
                    + (1 << shift) + " bytes per block");
        }
        return new Checkpoint(saved, h.getLong(EPOCH_OFFSET), clean, identity);
    }

    private static StateCorruptException corrupt(Path path, String what) {
        return new StateCorruptException(path + ": " + what);
    }

    private static byte[] utf8(String s, int maxBytes) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        if (b.length <= maxBytes) {
            return b;
        }
        // Cut at a character boundary, so the stored text decodes.
        int n = maxBytes;
        while (n > 0 && (b[n] & 0xC0) == 0x80) {
            n--;
        }
        return java.util.Arrays.copyOf(b, n);
    }

    private static void putString(ByteBuffer b, byte[] s) {
        b.putShort((short) s.length).put(s);
    }

    private static String getString(ByteBuffer h, int maxBytes, int header, Path path, String what)
            throws StateCorruptException {
        if (h.position() + 2 > header - CRC_BYTES) {
            throw corrupt(path, "header too short for the " + what);
        }
        int len = Short.toUnsignedInt(h.getShort());
        if (len > maxBytes || h.position() + len > header - CRC_BYTES) {
            throw corrupt(path, what + " of " + len + " bytes does not fit (at most " + maxBytes + ")");
        }
        byte[] s = new byte[len];
        h.get(s);
        return new String(s, StandardCharsets.UTF_8);
    }

    private static int crc(ByteBuffer b, int from, int length) {
        CRC32C c = new CRC32C();
        c.update(b.duplicate().clear().position(from).limit(from + length));
        return (int) c.getValue();
    }
}
