package org.blksnap.nbd;

/**
 * Wire layouts and numbers of the NBD fixed-newstyle handshake ("option haggling"). All integers
 * are big-endian; strings are UTF-8 without a terminator.
 *
 * <pre>
 * Server greeting (18 bytes)
 *   0                   8                   16      18
 *   +-------------------+-------------------+-------+
 *   | u64 NBDMAGIC      | u64 IHAVEOPT      | u16   |  handshake flags (FIXED_NEWSTYLE | NO_ZEROES)
 *   +-------------------+-------------------+-------+
 *
 * Client flags (4 bytes)
 *   0       4
 *   +-------+
 *   | u32   |  C_FIXED_NEWSTYLE | C_NO_ZEROES; any other bit: the server disconnects
 *   +-------+
 *
 * Option request header (16 bytes), then {length} bytes of option data
 *   0                   8         12        16
 *   +-------------------+---------+---------+
 *   | u64 IHAVEOPT      | u32 opt | u32 len |
 *   +-------------------+---------+---------+
 *
 * Option reply header (20 bytes), then {length} bytes of reply data
 *   0                   8         12        16        20
 *   +-------------------+---------+---------+---------+
 *   | u64 REPLY_MAGIC   | u32 opt | u32 type| u32 len |
 *   +-------------------+---------+---------+---------+
 *
 * NBD_OPT_EXPORT_NAME reply (10 bytes, + 124 zero bytes unless NO_ZEROES was negotiated)
 *   0                   8       10
 *   +-------------------+-------+
 *   | u64 export size   | u16   |  transmission flags
 *   +-------------------+-------+
 *
 * NBD_OPT_INFO / NBD_OPT_GO data
 *   u32 namelen | name | u16 n | n x u16 info type
 *
 * NBD_REP_INFO data: u16 info type, then
 *   EXPORT (12):     0 u16 type | 2 u64 size | 10 u16 transmission flags
 *   NAME / DESCRIPTION: 0 u16 type | 2 text
 *   BLOCK_SIZE (14): 0 u16 type | 2 u32 minimum | 6 u32 preferred | 10 u32 maximum payload
 *
 * NBD_REP_SERVER data:        u32 namelen | name | description
 * NBD_REP_META_CONTEXT data:  u32 context id | name
 * NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data:
 *   u32 namelen | export name | u32 nqueries | nqueries x (u32 len | query)
 * Error replies (bit 31 of type set) carry an optional UTF-8 message as data.
 * </pre>
 */
final class NbdHandshakeDescriptor {
    private NbdHandshakeDescriptor() {
    }

    static final long NBDMAGIC = 0x4e42444d41474943L;
    static final long IHAVEOPT = 0x49484156454F5054L;
    static final long OPTION_REPLY_MAGIC = 0x0003e889045565a9L;

    // Greeting.
    static final int GREETING_MAGIC_OFFSET = 0;
    static final int GREETING_OPTS_MAGIC_OFFSET = 8;
    static final int GREETING_FLAGS_OFFSET = 16;
    static final int GREETING_LENGTH = 18;

    static final int FLAG_FIXED_NEWSTYLE = 1;
    static final int FLAG_NO_ZEROES = 1 << 1;
    static final int CLIENT_FLAG_FIXED_NEWSTYLE = 1;
    static final int CLIENT_FLAG_NO_ZEROES = 1 << 1;
    static final int CLIENT_FLAGS_KNOWN = CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES;
    static final int CLIENT_FLAGS_LENGTH = 4;

    // Option request header.
    static final int OPTION_MAGIC_OFFSET = 0;
    static final int OPTION_CODE_OFFSET = 8;
    static final int OPTION_LENGTH_OFFSET = 12;
    static final int OPTION_HEADER_LENGTH = 16;

    // Option reply header.
    static final int REPLY_MAGIC_OFFSET = 0;
    static final int REPLY_OPTION_OFFSET = 8;
    static final int REPLY_TYPE_OFFSET = 12;
    static final int REPLY_LENGTH_OFFSET = 16;
    static final int REPLY_HEADER_LENGTH = 20;

    // EXPORT_NAME reply.
    static final int EXPORT_NAME_SIZE_OFFSET = 0;
    static final int EXPORT_NAME_FLAGS_OFFSET = 8;
    static final int EXPORT_NAME_REPLY_LENGTH = 10;
    static final int EXPORT_NAME_ZEROES_LENGTH = 124;

    // NBD_REP_INFO payloads.
    static final int INFO_TYPE_OFFSET = 0;
    static final int INFO_EXPORT_SIZE_OFFSET = 2;
    static final int INFO_EXPORT_FLAGS_OFFSET = 10;
    static final int INFO_EXPORT_LENGTH = 12;
    static final int INFO_TEXT_OFFSET = 2;
    static final int INFO_BLOCK_SIZE_MINIMUM_OFFSET = 2;
    static final int INFO_BLOCK_SIZE_PREFERRED_OFFSET = 6;
    static final int INFO_BLOCK_SIZE_MAXIMUM_OFFSET = 10;
    static final int INFO_BLOCK_SIZE_LENGTH = 14;

    // NBD_REP_META_CONTEXT payload.
    static final int META_CONTEXT_ID_OFFSET = 0;
    static final int META_CONTEXT_NAME_OFFSET = 4;

    // Options.
    static final int OPT_EXPORT_NAME = 1;
    static final int OPT_ABORT = 2;
    static final int OPT_LIST = 3;
    static final int OPT_PEEK_EXPORT = 4;
    static final int OPT_STARTTLS = 5;
    static final int OPT_INFO = 6;
    static final int OPT_GO = 7;
    static final int OPT_STRUCTURED_REPLY = 8;
    static final int OPT_LIST_META_CONTEXT = 9;
    static final int OPT_SET_META_CONTEXT = 10;
    static final int OPT_EXTENDED_HEADERS = 11;

    // Option reply types.
    static final int REP_ACK = 1;
    static final int REP_SERVER = 2;
    static final int REP_INFO = 3;
    static final int REP_META_CONTEXT = 4;
    static final int REP_FLAG_ERROR = 1 << 31;
    static final int REP_ERR_UNSUP = REP_FLAG_ERROR | 1;
    static final int REP_ERR_POLICY = REP_FLAG_ERROR | 2;
    static final int REP_ERR_INVALID = REP_FLAG_ERROR | 3;
    static final int REP_ERR_PLATFORM = REP_FLAG_ERROR | 4;
    static final int REP_ERR_TLS_REQD = REP_FLAG_ERROR | 5;
    static final int REP_ERR_UNKNOWN = REP_FLAG_ERROR | 6;
    static final int REP_ERR_SHUTDOWN = REP_FLAG_ERROR | 7;
    static final int REP_ERR_BLOCK_SIZE_REQD = REP_FLAG_ERROR | 8;
    static final int REP_ERR_TOO_BIG = REP_FLAG_ERROR | 9;

    // Info types.
    static final int INFO_EXPORT = 0;
    static final int INFO_NAME = 1;
    static final int INFO_DESCRIPTION = 2;
    static final int INFO_BLOCK_SIZE = 3;

    // Bounds (spec: strings MUST be <= 4096 bytes).
    /** Longest export name, context name, query or message we accept or send, in bytes. */
    static final int MAX_STRING_BYTES = 4096;
    /** Largest option payload we read into memory; larger ones are skipped and refused. */
    static final int MAX_OPTION_BYTES = 64 * 1024;
    /** Largest option payload we are willing to skip; beyond this the client is disconnected. */
    static final int MAX_SKIPPABLE_OPTION_BYTES = 1 << 20;
    /** Options a client may send before we treat it as abuse and disconnect. */
    static final int MAX_OPTIONS_PER_CONNECTION = 4096;

    static boolean isError(int replyType) {
        return (replyType & REP_FLAG_ERROR) != 0;
    }

    static String optionName(int option) {
        return switch (option) {
            case OPT_EXPORT_NAME -> "EXPORT_NAME";
            case OPT_ABORT -> "ABORT";
            case OPT_LIST -> "LIST";
            case OPT_PEEK_EXPORT -> "PEEK_EXPORT";
            case OPT_STARTTLS -> "STARTTLS";
            case OPT_INFO -> "INFO";
            case OPT_GO -> "GO";
            case OPT_STRUCTURED_REPLY -> "STRUCTURED_REPLY";
            case OPT_LIST_META_CONTEXT -> "LIST_META_CONTEXT";
            case OPT_SET_META_CONTEXT -> "SET_META_CONTEXT";
            case OPT_EXTENDED_HEADERS -> "EXTENDED_HEADERS";
            default -> "option " + Integer.toUnsignedString(option);
        };
    }
}
