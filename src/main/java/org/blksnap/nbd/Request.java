package org.blksnap.nbd;

import java.nio.ByteBuffer;

/**
 * One decoded request.
 *
 * @param flags        command flags (u16)
 * @param type         command type (u16)
 * @param cookie       opaque, echoed in the reply
 * @param offsetBytes  u64 offset as sent (negative when >= 2^63, which is out of range anyway)
 * @param lengthBytes  u32 length as sent
 * @param payload      WRITE data (pooled), else null
 * @param budgetBytes  bytes of the connection's in-flight budget this request holds
 */
record Request(int flags, int type, long cookie, long offsetBytes, long lengthBytes, ByteBuffer payload,
               int budgetBytes) {
}
