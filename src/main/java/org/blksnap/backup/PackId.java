package org.blksnap.backup;

import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.util.HexFormat;

/** The 16 random bytes that name a pack file ({@code packs/<32 hex>.pack}). Immutable. */
record PackId(long hi, long lo) {
    static final int BYTES = 16;
    private static final SecureRandom RANDOM = new SecureRandom();

    static PackId random() {
        return new PackId(RANDOM.nextLong(), RANDOM.nextLong());
    }

    static PackId read(ByteBuffer buf) {
        return new PackId(buf.getLong(), buf.getLong());
    }

    void write(ByteBuffer buf) {
        buf.putLong(hi).putLong(lo);
    }

    /**
     * Parses the 32 hex digits of a file name.
     *
     * @throws IllegalArgumentException not 32 hex digits
     */
    static PackId parse(String hex) {
        if (hex.length() != 32) {
            throw new IllegalArgumentException("pack name '" + hex + "' is not 32 hex digits");
        }
        return new PackId(HexFormat.fromHexDigitsToLong(hex, 0, 16), HexFormat.fromHexDigitsToLong(hex, 16, 32));
    }

    @Override
    public String toString() {
        return HexFormat.of().toHexDigits(hi) + HexFormat.of().toHexDigits(lo);
    }
}
