package org.blksnap.nbd;

import java.io.IOException;
import org.blksnap.engine.BlockDevice;

/** {@code base:allocation} from {@link BlockDevice#mapAllocation}: holes are HOLE|ZERO (3), data is 0. */
final class BaseAllocationContext implements MetaContext {
    static final String NAME = "base:allocation";
    static final String NAMESPACE = "base:";

    private final BlockDevice device;

    BaseAllocationContext(BlockDevice device) {
        this.device = device;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public void extents(long offsetBytes, long lengthBytes, StatusSink sink) throws IOException {
        device.mapAllocation(offsetBytes, lengthBytes, (len, hole) -> sink.extent(len,
                hole ? NbdTransmissionDescriptor.STATE_HOLE | NbdTransmissionDescriptor.STATE_ZERO : 0));
    }
}
