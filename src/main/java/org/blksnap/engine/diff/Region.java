package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.blksnap.engine.BlockDevice;

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

    /** Hands {@code lengthBytes} from {@code offsetInRegion} to {@code sink} as a range of the storage file. */
    void send(BlockDevice.ByteSink sink, long offsetInRegion, int lengthBytes) throws IOException {
        file.send(sink, offsetBytes + offsetInRegion, lengthBytes);
    }

    void write(ByteBuffer src, long offsetInRegion) throws IOException {
        file.write(src, offsetBytes + offsetInRegion);
    }
}
