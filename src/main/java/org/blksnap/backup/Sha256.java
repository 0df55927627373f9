package org.blksnap.backup;

import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * A SHA-256 digest as four longs: the name of a chunk or index node, and the key of the chunk
 * store's index (compact, and equal by value). Immutable.
 */
record Sha256(long a, long b, long c, long d) {
    static final int BYTES = 32;

    /** The digest of {@code length} bytes of {@code data} from {@code offset}. */
    static Sha256 of(byte[] data, int offset, int length) {
        MessageDigest md = DIGESTS.poll();
        if (md == null) {
            md = digest();
        }
        try {
            md.update(data, offset, length);
            return read(ByteBuffer.wrap(md.digest()));
        } finally {
            DIGESTS.offer(md); // digest() has reset it
        }
    }

    /**
     * Digests for reuse: hashing runs on short-lived virtual threads, where a thread-local would be
     * one lookup of the provider list per chunk. Grows to the number of threads hashing at once.
     */
    private static final ConcurrentLinkedQueue<MessageDigest> DIGESTS = new ConcurrentLinkedQueue<>();

    static Sha256 of(byte[] data) {
        return of(data, 0, data.length);
    }

    static MessageDigest digest() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK has no SHA-256", e);
        }
    }

    /** Reads 32 bytes at the buffer's position (advancing it). */
    static Sha256 read(ByteBuffer buf) {
        return new Sha256(buf.getLong(), buf.getLong(), buf.getLong(), buf.getLong());
    }

    /** Writes the 32 bytes at the buffer's position (advancing it). */
    void write(ByteBuffer buf) {
        buf.putLong(a).putLong(b).putLong(c).putLong(d);
    }

    byte[] bytes() {
        ByteBuffer buf = ByteBuffer.allocate(BYTES);
        write(buf);
        return buf.array();
    }

    String hex() {
        return HexFormat.of().formatHex(bytes());
    }

    /** The first 12 hex digits, for messages. */
    String shortHex() {
        return hex().substring(0, 12);
    }

    @Override
    public String toString() {
        return hex();
    }
}
