package org.blksnap.engine.diff;

import java.io.IOException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.device.NativeIo;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Copy-on-write inside the kernel: a chunk's take-time bytes go from the original's file to its
 * region of the difference storage with copy_file_range(2) and never pass through a buffer of ours,
 * which saves two of the four memory copies a first write to a chunk costs (original into a buffer,
 * buffer out to the storage). Used when both sides are regular files that {@link NativeIo#system()}
 * has open; at the first refusal (files on filesystems of different kinds, a kernel without it) it
 * switches itself off for its diff area and chunks go through a buffer as before. The system property
 * {@code blksnap.kernelCopy=false} switches it off from the start (for A/B measurements).
 *
 * <p>Thread-safe: the calls are positional, and the switch is a volatile flag (a race at most makes
 * two callers find out the same refusal).
 */
final class KernelCopy {
    private static final Logger LOG = LoggerFactory.getLogger(KernelCopy.class);
    static final boolean ENABLED = !"false".equals(System.getProperty("blksnap.kernelCopy"));

    private final String device;
    private final NativeIo io;
    private volatile boolean refused;
    private final java.util.concurrent.atomic.AtomicLong copied = new java.util.concurrent.atomic.AtomicLong();

    /** @param io {@link NativeIo#system()}, whose handles the devices and storage files give; another in tests */
    KernelCopy(String device, NativeIo io) {
        this.device = device;
        this.io = io;
    }

    /** Whether {@link #copy} from {@code from} may succeed (the storage side is known only with a region). */
    boolean mayTry(BlockDevice from) {
        return ENABLED && !refused && from.kernelCopyHandle() >= 0;
    }

    /** Chunks copied inside the kernel so far (for tests). */
    long copiedChunks() {
        return copied.get();
    }

    /**
     * Copies {@code lengthBytes} at {@code fromOffsetBytes} of {@code from} to the start of {@code to}.
     *
     * @return false when it cannot be done in the kernel: nothing was copied, the caller copies
     * @throws IOException the copy failed (a short original, an I/O error, a full filesystem)
     */
    boolean copy(BlockDevice from, long fromOffsetBytes, Region to, int lengthBytes) throws IOException {
        if (!ENABLED || refused) {
            return false;
        }
        int in = from.kernelCopyHandle();
        int out = to.file().kernelHandle();
        if (in < 0 || out < 0) {
            return false;
        }
        long done = 0;
        try {
            while (done < lengthBytes) {
                long n = io.copyFileRange(in, fromOffsetBytes + done, out, to.offsetBytes() + done, lengthBytes - done);
                if (n == 0) {
                    throw new IOException(from.name() + " ended at byte " + (fromOffsetBytes + done) + " while "
                            + (lengthBytes - done) + " more bytes of a chunk were to be copied");
                }
                done += n;
            }
            copied.incrementAndGet();
            return true;
        } catch (UnsupportedOperationException e) {
            if (done > 0) {
                throw new IOException("copy_file_range stopped after " + done + " of " + lengthBytes + " bytes: "
                        + e.getMessage(), e);
            }
            if (!refused) {
                refused = true;
                LOG.info("{}: chunks are copied through a buffer: the kernel does not copy from {} to {} ({})", device,
                        from.name(), to.file().path(), e.getMessage());
            }
            return false;
        }
    }
}
