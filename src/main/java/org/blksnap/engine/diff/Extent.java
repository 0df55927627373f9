package org.blksnap.engine.diff;

/**
 * A piece of an image's allocation map.
 *
 * @param offsetBytes where it starts on the device, in bytes
 * @param lengthBytes its length in bytes, > 0
 * @param hole        true if unallocated (reads as zeros), false for data
 */
record Extent(long offsetBytes, long lengthBytes, boolean hole) {

    Extent {
        if (offsetBytes < 0) {
            throw new IllegalArgumentException("offsetBytes (" + offsetBytes + ") must be >= 0");
        }
        if (lengthBytes <= 0) {
            throw new IllegalArgumentException("lengthBytes (" + lengthBytes + ") must be > 0");
        }
    }

    /** Where it ends (exclusive), in bytes. */
    long endBytes() {
        return offsetBytes + lengthBytes;
    }

    /** The same range as data. */
    Extent asData() {
        return hole ? new Extent(offsetBytes, lengthBytes, false) : this;
    }
}
