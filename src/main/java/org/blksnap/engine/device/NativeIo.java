package org.blksnap.engine.device;

import java.io.IOException;
import java.nio.file.Path;

/**
 * The few native file calls Java does not offer: fallocate (preallocate, punch holes),
 * lseek SEEK_DATA/SEEK_HOLE (allocation maps) and FIEMAP (where a file's bytes lie on its disk). Behind an interface so that tests can fail them on
 * demand; {@link #system()} is the real one, or {@link #unsupported()} where FFM is not usable.
 */
public interface NativeIo {
    /** Opens {@code path} for these calls only; returns a handle. */
    int open(Path path, boolean write) throws IOException;

    void close(int handle);

    /** Reserves blocks for the range (fallocate mode 0, keep size). */
    void preallocate(int handle, long offsetBytes, long lengthBytes) throws IOException;

    /** Deallocates the range, which then reads as zeros (FALLOC_FL_PUNCH_HOLE | KEEP_SIZE). */
    void punchHole(int handle, long offsetBytes, long lengthBytes) throws IOException;

    /** The first data offset at or after {@code offsetBytes}, or -1 if none (SEEK_DATA). */
    long seekData(int handle, long offsetBytes) throws IOException;

    /** The first hole offset at or after {@code offsetBytes} (SEEK_HOLE). */
    long seekHole(int handle, long offsetBytes) throws IOException;

    /**
     * Where the byte at {@code offsetBytes} of the file lies on the block device of its filesystem
     * (ioctl FS_IOC_FIEMAP with FIEMAP_FLAG_SYNC), in bytes; -1 when it has no place there (a hole,
     * inline or not-yet-allocated data, or a filesystem without FIEMAP, such as tmpfs).
     *
     * @throws IOException the call failed otherwise
     */
    default long physicalOffset(int handle, long offsetBytes) throws IOException {
        throw new IOException("FIEMAP is not supported here");
    }

    /**
     * Copies up to {@code lengthBytes} from one open file to another inside the kernel
     * (copy_file_range(2)): no byte passes through user space. Positional on both sides: neither
     * file's offset moves, so concurrent callers on one handle are fine.
     *
     * @return bytes copied, at most {@code lengthBytes}; fewer is not an error (call again), 0 at the
     *         source's end
     * @throws UnsupportedOperationException the kernel or these filesystems cannot (EXDEV, EINVAL,
     *                                       ENOSYS, EOPNOTSUPP): copy through a buffer instead
     * @throws IOException                   another failure (EIO, ENOSPC, ...)
     */
    default long copyFileRange(int from, long fromOffsetBytes, int to, long toOffsetBytes, long lengthBytes)
            throws IOException {
        throw new UnsupportedOperationException("copy_file_range is not available");
    }

    /** Whether the calls work on this system; when false every call throws. */
    boolean available();

    /** The process-wide native implementation, probed once. */
    static NativeIo system() {
        return LinuxNativeIo.INSTANCE;
    }

    /** An implementation that supports nothing. */
    static NativeIo unsupported() {
        return UnsupportedNativeIo.INSTANCE;
    }
}
