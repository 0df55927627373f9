package org.blksnap.nbd;

/**
 * Wire layouts and numbers of the NBD transmission phase (compact requests, simple replies,
 * structured reply chunks). All integers are big-endian.
 *
 * <pre>
 * Request (28 bytes), followed by {length} bytes of data for NBD_CMD_WRITE only
 *   0         4       6       8                   16                  24        28
 *   +---------+-------+-------+-------------------+-------------------+---------+
 *   | u32 MAG | u16 f | u16 t | u64 cookie        | u64 offset        | u32 len |
 *   +---------+-------+-------+-------------------+-------------------+---------+
 *   (command flags and command type are two separate u16)
 *
 * Simple reply (16 bytes), followed by {length} bytes for a successful READ
 *   0         4         8                   16
 *   +---------+---------+-------------------+
 *   | u32 MAG | u32 err | u64 cookie        |
 *   +---------+---------+-------------------+
 *
 * Structured reply chunk (20 bytes), followed by {length} bytes of chunk payload
 *   0         4       6       8                   16        20
 *   +---------+-------+-------+-------------------+---------+
 *   | u32 MAG | u16 f | u16 t | u64 cookie        | u32 len |
 *   +---------+-------+-------+-------------------+---------+
 *
 * Chunk payloads
 *   OFFSET_DATA:  0 u64 offset | 8 data
 *   OFFSET_HOLE:  0 u64 offset | 8 u32 hole size                  (12 bytes)
 *   BLOCK_STATUS: 0 u32 context id | 4 n x (u32 length | u32 status flags)
 *   ERROR:        0 u32 error | 4 u16 message length | 6 message
 *   ERROR_OFFSET: 0 u32 error | 4 u16 message length | 6 message | u64 offset
 * </pre>
 */
final class NbdTransmissionDescriptor {
    private NbdTransmissionDescriptor() {
    }

    static final int REQUEST_MAGIC = 0x25609513;
    static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;

    // Request.
    static final int REQUEST_MAGIC_OFFSET = 0;
    static final int REQUEST_FLAGS_OFFSET = 4;
    static final int REQUEST_TYPE_OFFSET = 6;
    static final int REQUEST_COOKIE_OFFSET = 8;
    static final int REQUEST_OFFSET_OFFSET = 16;
    static final int REQUEST_LENGTH_OFFSET = 24;
    static final int REQUEST_LENGTH = 28;

    // Simple reply.
    static final int SIMPLE_MAGIC_OFFSET = 0;
    static final int SIMPLE_ERROR_OFFSET = 4;
    static final int SIMPLE_COOKIE_OFFSET = 8;
    static final int SIMPLE_REPLY_LENGTH = 16;

    // Structured reply chunk header.
    static final int CHUNK_MAGIC_OFFSET = 0;
    static final int CHUNK_FLAGS_OFFSET = 4;
    static final int CHUNK_TYPE_OFFSET = 6;
    static final int CHUNK_COOKIE_OFFSET = 8;
    static final int CHUNK_LENGTH_OFFSET = 16;
    static final int CHUNK_HEADER_LENGTH = 20;

    // Chunk payloads.
    static final int DATA_OFFSET_OFFSET = 0;
    static final int DATA_PAYLOAD_HEADER_LENGTH = 8;
    static final int HOLE_OFFSET_OFFSET = 0;
    static final int HOLE_SIZE_OFFSET = 8;
    static final int HOLE_PAYLOAD_LENGTH = 12;
    static final int STATUS_CONTEXT_ID_OFFSET = 0;
    static final int STATUS_DESCRIPTORS_OFFSET = 4;
    static final int STATUS_DESCRIPTOR_LENGTH_OFFSET = 0;
    static final int STATUS_DESCRIPTOR_FLAGS_OFFSET = 4;
    static final int STATUS_DESCRIPTOR_LENGTH = 8;
    static final int ERROR_CODE_OFFSET = 0;
    static final int ERROR_MESSAGE_LENGTH_OFFSET = 4;
    static final int ERROR_MESSAGE_OFFSET = 6;
    /** ERROR_OFFSET carries a u64 offset after the message. */
    static final int ERROR_OFFSET_OFFSET_LENGTH = 8;

    // Reply chunk flags and types.
    static final int REPLY_FLAG_DONE = 1;
    static final int REPLY_TYPE_NONE = 0;
    static final int REPLY_TYPE_OFFSET_DATA = 1;
    static final int REPLY_TYPE_OFFSET_HOLE = 2;
    static final int REPLY_TYPE_BLOCK_STATUS = 5;
    static final int REPLY_TYPE_ERROR = (1 << 15) + 1;
    static final int REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

    // Commands.
    static final int CMD_READ = 0;
    static final int CMD_WRITE = 1;
    static final int CMD_DISC = 2;
    static final int CMD_FLUSH = 3;
    static final int CMD_TRIM = 4;
    static final int CMD_CACHE = 5;
    static final int CMD_WRITE_ZEROES = 6;
    static final int CMD_BLOCK_STATUS = 7;

    // Command flags.
    static final int CMD_FLAG_FUA = 1;
    static final int CMD_FLAG_NO_HOLE = 1 << 1;
    static final int CMD_FLAG_DF = 1 << 2;
    static final int CMD_FLAG_REQ_ONE = 1 << 3;
    static final int CMD_FLAG_FAST_ZERO = 1 << 4;

    // Transmission flags (u16, sent in NBD_INFO_EXPORT or the EXPORT_NAME reply).
    static final int FLAG_HAS_FLAGS = 1;
    static final int FLAG_READ_ONLY = 1 << 1;
    static final int FLAG_SEND_FLUSH = 1 << 2;
    static final int FLAG_SEND_FUA = 1 << 3;
    static final int FLAG_ROTATIONAL = 1 << 4;
    static final int FLAG_SEND_TRIM = 1 << 5;
    static final int FLAG_SEND_WRITE_ZEROES = 1 << 6;
    static final int FLAG_SEND_DF = 1 << 7;
    static final int FLAG_CAN_MULTI_CONN = 1 << 8;
    static final int FLAG_SEND_CACHE = 1 << 10;
    static final int FLAG_SEND_FAST_ZERO = 1 << 11;

    // base:allocation status flags.
    static final int STATE_HOLE = 1;
    static final int STATE_ZERO = 1 << 1;

    // Error numbers.
    static final int EPERM = 1;
    static final int EIO = 5;
    static final int ENOMEM = 12;
    static final int EINVAL = 22;
    static final int ENOSPC = 28;
    static final int EOVERFLOW = 75;
    static final int ENOTSUP = 95;
    static final int ESHUTDOWN = 108;

    /**
     * The NBD error for an engine error: NBD defines EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW,
     * ENOTSUP and ESHUTDOWN; everything else goes out as EIO, or EINVAL for argument errors, as the
     * NBD specification asks. A removed device or image is ESHUTDOWN (the export is going away).
     */
    static int errorOf(org.blksnap.engine.Errno errno) {
        return switch (errno) {
            case EPERM -> EPERM;
            case ENOMEM -> ENOMEM;
            case EINVAL, ENODATA, ENXIO, ENOENT -> EINVAL;
            case ENOSPC, EFBIG -> ENOSPC;
            case EOVERFLOW -> EOVERFLOW;
            case ENOTSUP -> ENOTSUP;
            case ESHUTDOWN, ENODEV -> ESHUTDOWN;
            default -> EIO;
        };
    }

    // Bounds.
    /** Largest READ or WRITE payload, in bytes (the spec's portable maximum, 32 MiB). */
    static final int MAX_PAYLOAD_BYTES = 32 * 1024 * 1024;
    /** Largest unfragmented read a DF client may demand; we never fragment DF reads at all. */
    static final int DF_GUARANTEED_BYTES = 64 * 1024;
    /** Most extents per BLOCK_STATUS chunk we send (spec: SHOULD be at most 2^20). */
    static final int MAX_EXTENTS_PER_CHUNK = 64 * 1024;
    /** Longest error message we put in an error chunk, in bytes. */
    static final int MAX_ERROR_MESSAGE_BYTES = 1024;

    static String commandName(int type) {
        return switch (type) {
            case CMD_READ -> "READ";
            case CMD_WRITE -> "WRITE";
            case CMD_DISC -> "DISC";
            case CMD_FLUSH -> "FLUSH";
            case CMD_TRIM -> "TRIM";
            case CMD_CACHE -> "CACHE";
            case CMD_WRITE_ZEROES -> "WRITE_ZEROES";
            case CMD_BLOCK_STATUS -> "BLOCK_STATUS";
            default -> "command " + type;
        };
    }
}
