package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A piece of difference storage handed to one chunk for the life of the snapshot.
 *
 * @param file        the storage file
 * @param offsetBytes where the region starts in the file
 * @param lengthBytes region length (one full chunk)
 */
record Region(StorageFile file, long offsetBytes, long lengthBytes) {

    void read(ByteBuffer dst, long offsetInRegion) throws IOException {
        file.read(dst, offsetBytes + offsetInRegion);
    }

    void write(ByteBuffer src, long offsetInRegion) throws IOException {
        file.write(src, offsetBytes + offsetInRegion);
    }
}
