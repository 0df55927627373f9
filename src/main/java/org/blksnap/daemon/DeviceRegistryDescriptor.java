package org.blksnap.daemon;

/**
 * The on-disk layout of {@code DATA_DIR/devices}: the devices added at run time
 * ({@code blksnap device add}), restored at every start. Version 1. All integers are big-endian;
 * strings are UTF-8 without a terminator.
 *
 * <pre>
 * File (HEADER_LENGTH + body + CRC_LENGTH bytes)
 *   0          4      6      8          12         16
 *   +----------+------+------+----------+----------+
 *   | u32      | u16  | u16  | u32      | u32      |  header
 *   | MAGIC    | ver  | flags| entries N| body B   |  MAGIC "BSDR", VERSION 1, flags 0 or FLAG_ENTRY_FLAGS
 *   +----------+------+------+----------+----------+
 *   | entry 0 | entry 1 | ... | entry N-1          |  body, exactly B bytes
 *   +----------+-----------------------------------+
 *   | u32 CRC  |                                      CRC32C (Castagnoli) of bytes [0, 16 + B)
 *   +----------+
 *
 * Entry (12 + name + path bytes, plus 2 with FLAG_ENTRY_FLAGS)
 *   0      2          2+n    4+n        4+n+p            12+n+p       14+n+p
 *   +------+----------+------+----------+----------------+------------+
 *   | u16 n| name     | u16 p| path     | u64 size bytes | u16 flags  |  size of the device when it was added;
 *   +------+----------+------+----------+----------------+------------+  flags only with FLAG_ENTRY_FLAGS
 * </pre>
 *
 * <p>FLAG_ENTRY_FLAGS is set only when some entry has a flag (ENTRY_FLAG_READ_ONLY: served read-only),
 * so a registry without read-only devices is byte for byte what blksnapd wrote before the flag
 * existed, and an older blksnapd refuses, naming the flag, one that it would misread.
 *
 * <p>The file is only ever replaced whole: written as {@code devices.new}, forced to disk, renamed
 * over {@code devices}, then the directory is forced. A crash leaves either the old file or the new
 * one, and at worst a torn {@code devices.new}, which the next start deletes unread. A file that
 * fails any check (length, magic, version, flags, CRC, entry bounds, duplicate names) is never
 * read as valid: the daemon refuses to start and names it.
 */
final class DeviceRegistryDescriptor {
    private DeviceRegistryDescriptor() {
    }

    /** "BSDR": BlkSnap Device Registry. */
    static final int MAGIC = 0x42534452;
    static final int VERSION = 1;
    /** No header flag. */
    static final int FLAGS_NONE = 0;
    /** Header flag: every entry ends with a u16 of entry flags. Any other header flag is refused. */
    static final int FLAG_ENTRY_FLAGS = 1;
    /** Entry flag: the device is served read-only over NBD. Any other entry flag is refused. */
    static final int ENTRY_FLAG_READ_ONLY = 1;
    /** Bytes of the entry flags, when FLAG_ENTRY_FLAGS is set. */
    static final int ENTRY_FLAGS_LENGTH = 2;

    static final int MAGIC_OFFSET = 0;
    static final int VERSION_OFFSET = 4;
    static final int FLAGS_OFFSET = 6;
    static final int ENTRY_COUNT_OFFSET = 8;
    static final int BODY_LENGTH_OFFSET = 12;
    static final int HEADER_LENGTH = 16;
    static final int CRC_LENGTH = 4;

    /** Fixed bytes of one entry: the two u16 lengths and the u64 size. */
    static final int ENTRY_FIXED_LENGTH = 2 + 2 + 8;

    /** Bounds, checked before anything is allocated: a longer name or path, or more, is refused. */
    static final int MAX_NAME_BYTES = 255;
    static final int MAX_PATH_BYTES = 4096;
    static final int MAX_ENTRIES = 4096;
    static final int MAX_BODY_BYTES = 1 << 20;
    static final int MAX_FILE_BYTES = HEADER_LENGTH + MAX_BODY_BYTES + CRC_LENGTH;

    /** The file name in the data directory, and the name it is written under before the rename. */
    static final String FILE_NAME = "devices";
    static final String NEW_FILE_NAME = "devices.new";
}
