package org.blksnap.backup;

/**
 * The NBD wire as the backup's client speaks it (fixed newstyle, {@code NBD_OPT_GO}, simple
 * replies; see docs/nbd.md and /work/shared/reference/nbd.md). All integers big-endian.
 *
 * <pre>
 * server greeting (18):  u64 "NBDMAGIC" | u64 "IHAVEOPT" | u16 handshake flags
 * client flags (4):      u32 (FIXED_NEWSTYLE | NO_ZEROES)
 * option (16 + n):       u64 "IHAVEOPT" | u32 option | u32 n | data
 *   NBD_OPT_GO data:     u32 name length | name | u16 info count (0)
 * option reply (20 + n): u64 0x3e889045565a9 | u32 option | u32 type | u32 n | data
 *   NBD_REP_INFO data:   u16 info type | (NBD_INFO_EXPORT: u64 size | u16 transmission flags)
 * request (28 [+ n]):    u32 0x25609513 | u16 flags | u16 type | u64 cookie | u64 offset | u32 n | [data]
 * simple reply (16):     u32 0x67446698 | u32 error | u64 cookie | [data of a read]
 * </pre>
 */
final class NbdClientDescriptor {
    private NbdClientDescriptor() {
    }

    static final long NBDMAGIC = 0x4e42444d41474943L;
    static final long IHAVEOPT = 0x49484156454F5054L;
    static final long OPTION_REPLY_MAGIC = 0x0003e889045565a9L;
    static final int GREETING_BYTES = 18;
    static final int FLAG_FIXED_NEWSTYLE = 1;
    static final int FLAG_NO_ZEROES = 2;

    static final int OPT_ABORT = 2;
    static final int OPT_GO = 7;
    static final int OPTION_REPLY_HEADER_BYTES = 20;
    static final int REP_ACK = 1;
    static final int REP_INFO = 3;
    static final int REP_FLAG_ERROR = 1 << 31;
    static final int INFO_EXPORT = 0;
    /** Largest option reply payload accepted, in bytes (names and messages are at most 4096). */
    static final int MAX_OPTION_REPLY_BYTES = 64 << 10;

    static final int REQUEST_MAGIC = 0x25609513;
    static final int REQUEST_BYTES = 28;
    static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    static final int SIMPLE_REPLY_BYTES = 16;

    static final int CMD_READ = 0;
    static final int CMD_WRITE = 1;
    static final int CMD_DISC = 2;
    static final int CMD_FLUSH = 3;
    static final int CMD_WRITE_ZEROES = 6;

    static final int TFLAG_READ_ONLY = 1 << 1;
    static final int TFLAG_SEND_FLUSH = 1 << 2;
    static final int TFLAG_SEND_WRITE_ZEROES = 1 << 6;

    /** Largest read or write this client sends, in bytes (servers accept 32 MiB at least; we stay well below). */
    static final int MAX_REQUEST_BYTES = 4 << 20;
}
