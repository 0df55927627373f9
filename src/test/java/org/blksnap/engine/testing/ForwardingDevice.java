package org.blksnap.engine.testing;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.blksnap.engine.BlockDevice;

/** A device that forwards everything to another; tests override what they fake. Thread-safe as the other. */
public class ForwardingDevice implements BlockDevice {
    private final BlockDevice target;

    public ForwardingDevice(BlockDevice target) {
        this.target = target;
    }

    @Override
    public String name() {
        return target.name();
    }

    @Override
    public long sizeBytes() {
        return target.sizeBytes();
    }

    @Override
    public int logicalBlockSize() {
        return target.logicalBlockSize();
    }

    @Override
    public void read(ByteBuffer dst, long offsetBytes) throws IOException {
        target.read(dst, offsetBytes);
    }

    @Override
    public Sender sender() {
        return target.sender();
    }

    @Override
    public void write(ByteBuffer src, long offsetBytes) throws IOException {
        target.write(src, offsetBytes);
    }

    @Override
    public void flush() throws IOException {
        target.flush();
    }

    @Override
    public void discard(long offsetBytes, long lengthBytes) throws IOException {
        target.discard(offsetBytes, lengthBytes);
    }

    @Override
    public void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) throws IOException {
        target.writeZeroes(offsetBytes, lengthBytes, mayUnmap);
    }

    @Override
    public void mapAllocation(long offsetBytes, long lengthBytes, ExtentSink sink) throws IOException {
        target.mapAllocation(offsetBytes, lengthBytes, sink);
    }

    @Override
    public void close() throws IOException {
        target.close();
    }
}
