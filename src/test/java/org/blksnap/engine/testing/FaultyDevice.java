package org.blksnap.engine.testing;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.blksnap.engine.BlockDevice;

/**
 * A {@link BlockDevice} that fails reads, writes (discards and write-zeroes included) or flushes on
 * demand, as its {@link #faults()} say, and otherwise passes every call to the device it wraps. A
 * failed call does not reach the wrapped device. Allocation queries always pass.
 *
 * <p>Thread-safe as the wrapped device is; the plan may change while I/O runs.
 */
public final class FaultyDevice extends ForwardingDevice {
    private final BlockDevice delegate;
    private final FaultPlan faults;

    public FaultyDevice(BlockDevice delegate) {
        super(delegate);
        this.delegate = delegate;
        this.faults = new FaultPlan(delegate.name());
    }

    /** What fails, switchable at run time. */
    public FaultPlan faults() {
        return faults;
    }

    @Override
    public int minimumIoBytes() {
        return delegate.minimumIoBytes();
    }

    @Override
    public void read(ByteBuffer dst, long offsetBytes) throws IOException {
        faults.check(FaultPlan.Op.READ, offsetBytes, dst.remaining());
        super.read(dst, offsetBytes);
    }

    /** None: every read must go through {@link #read}, where the faults are. */
    @Override
    public Sender sender() {
        return null;
    }

    @Override
    public void write(ByteBuffer src, long offsetBytes) throws IOException {
        faults.check(FaultPlan.Op.WRITE, offsetBytes, src.remaining());
        super.write(src, offsetBytes);
    }

    @Override
    public void flush() throws IOException {
        faults.check(FaultPlan.Op.FLUSH, 0, 0);
        super.flush();
    }

    @Override
    public void discard(long offsetBytes, long lengthBytes) throws IOException {
        faults.check(FaultPlan.Op.WRITE, offsetBytes, lengthBytes);
        super.discard(offsetBytes, lengthBytes);
    }

    @Override
    public void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) throws IOException {
        faults.check(FaultPlan.Op.WRITE, offsetBytes, lengthBytes);
        super.writeZeroes(offsetBytes, lengthBytes, mayUnmap);
    }

    @Override
    public boolean fastZeroes() {
        return delegate.fastZeroes();
    }

    @Override
    public String toString() {
        return "FaultyDevice[" + delegate.name() + "]";
    }
}
