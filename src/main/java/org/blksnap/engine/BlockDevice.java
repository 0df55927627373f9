package org.blksnap.engine;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;

/**
 * A block device: a fixed number of bytes addressed by byte offset.
 *
 * <p>All operations are positional and thread-safe: any number of threads may read and write
 * concurrently, and none of them moves a shared position. Reads and writes transfer the whole
 * buffer ({@code remaining()} bytes) or throw. Offsets and lengths are in bytes; callers keep
 * them inside {@code [0, sizeBytes())}, and implementations reject ranges outside with
 * {@link IllegalArgumentException}. I/O errors are {@link IOException}s that name the device,
 * the operation, the offset and the length.
 */
public interface BlockDevice extends AutoCloseable {

    /** A name for messages: a path, an export or an image name. */
    String name();

    /** Capacity in bytes. */
    long sizeBytes();

    /** Logical block size in bytes (512 or 4096); the smallest unit the device addresses. */
    int logicalBlockSize();

    /** The minimum efficient I/O size in bytes (the kernel's io_min); at least the logical block size. */
    default int minimumIoBytes() {
        return logicalBlockSize();
    }

    /** Reads {@code dst.remaining()} bytes at {@code offsetBytes} into {@code dst}. */
    void read(ByteBuffer dst, long offsetBytes) throws IOException;

    /**
     * The handle of this device's file for {@link org.blksnap.engine.device.NativeIo#system()}'s
     * in-kernel copies ({@code copyFileRange}), or -1 when its bytes cannot be copied that way (not a
     * regular file, no native calls, or a wrapper that must see every read). The handle belongs to
     * the device: never closed by the caller, valid until the device is closed.
     */
    default int kernelCopyHandle() {
        return -1;
    }

    /**
     * How the kernel may send this device's bytes without copying them through a buffer of the
     * caller's, or null when reads must go through {@link #read}: not a buffered regular file (O_DIRECT,
     * a block device node, no file at all), or a wrapper that must see every read. A snapshot image
     * has one: it hands its copied chunks as ranges of the difference storage and the rest as bytes it
     * read itself (see {@link Sender}). The sender belongs to the device and is valid until the device
     * is closed. Thread-safe.
     */
    default Sender sender() {
        return null;
    }

    /**
     * Sends one range of a device through a {@link ByteSink}: the device hands the range's bytes in
     * order, each exactly once, as file ranges the kernel may send by itself ({@link ByteSink#file})
     * or as bytes in memory ({@link ByteSink#bytes}). What is handed is what {@link #read} of the same
     * range would have returned at that moment. Thread-safe: any number of sends may run at once, each
     * with its own sink.
     */
    @FunctionalInterface
    interface Sender {
        /**
         * Hands {@code [offsetBytes, offsetBytes+lengthBytes)} to {@code sink}, in order, covering it
         * exactly once. The range lies inside the device (callers check; implementations reject others
         * with {@link IllegalArgumentException}). A failure of the device is thrown as {@link #read}
         * would throw it; what the sink threw is passed on (possibly wrapped); in both cases part of
         * the range may have been handed already.
         *
         * @throws IOException the device or the sink failed
         */
        void send(long offsetBytes, int lengthBytes, ByteSink sink) throws IOException;
    }

    /**
     * Where a {@link Sender}'s bytes go, for one send: file ranges and buffers, in the order of the
     * device's bytes. Each call sends at once, before it returns. Not thread-safe: one send, on the
     * thread that runs it.
     */
    interface ByteSink {
        /**
         * Sends {@code lengthBytes} of {@code file} from {@code positionBytes}; the kernel may move them
         * itself (sendfile), so the file's pages may be read after this returns, when the receiver takes
         * them: hand only ranges that nothing writes until the read is answered (see the senders).
         * Bytes past the file's end go out as zeros. The channel stays the caller's.
         *
         * @throws IOException the file could not be read or the bytes could not be sent
         */
        void file(FileChannel file, long positionBytes, int lengthBytes) throws IOException;

        /**
         * Sends {@code src}'s remaining bytes; its position advances to its limit. The bytes are copied
         * out before this returns, so src may be reused (or its lock released) right after.
         *
         * @throws IOException the bytes could not be sent
         */
        void bytes(ByteBuffer src) throws IOException;

        /**
         * A buffer the device may read the range into before handing it to {@link #bytes}: position 0,
         * limit the send's length in bytes, capacity at least that. The same buffer on every call of one
         * send; it belongs to the sink and is valid until the send returns.
         *
         * @throws IOException no memory could be had for it
         */
        ByteBuffer scratch() throws IOException;
    }

    /** Writes {@code src.remaining()} bytes at {@code offsetBytes}. Not durable until {@link #flush()}. */
    void write(ByteBuffer src, long offsetBytes) throws IOException;

    /** Makes every write that completed before this call durable. */
    void flush() throws IOException;

    /**
     * Tells the device that the range's content is no longer needed. Afterwards the range reads
     * as anything (zeros on files, where a hole is punched).
     */
    void discard(long offsetBytes, long lengthBytes) throws IOException;

    /**
     * Makes the range read as zeros.
     *
     * @param mayUnmap whether the device may deallocate the range (NBD's WRITE_ZEROES without NO_HOLE)
     */
    void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) throws IOException;

    /**
     * Whether {@link #writeZeroes} is cheap (punches holes, no data written), for NBD's FAST_ZERO.
     */
    default boolean fastZeroes() {
        return false;
    }

    /**
     * Describes allocation from {@code offsetBytes}: calls {@code sink} with consecutive extents
     * that start at {@code offsetBytes} and together cover at least {@code lengthBytes} (the last may
     * go past it, never past the device end), stopping early when the sink returns false. The
     * default says everything is allocated data.
     */
    default void mapAllocation(long offsetBytes, long lengthBytes, ExtentSink sink) throws IOException {
        sink.extent(Math.min(lengthBytes, sizeBytes() - offsetBytes), false);
    }

    /** Receives allocation extents in order. */
    @FunctionalInterface
    interface ExtentSink {
        /**
         * @param lengthBytes extent length, > 0
         * @param hole        true if the extent is unallocated and reads as zeros
         * @return false to stop
         */
        boolean extent(long lengthBytes, boolean hole);
    }

    /** Releases the device. Further calls fail. */
    @Override
    void close() throws IOException;

    /** Checks that {@code [offsetBytes, offsetBytes+lengthBytes)} lies inside the device. */
    default void checkRange(long offsetBytes, long lengthBytes) {
        if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes > sizeBytes() - lengthBytes) {
            throw new IllegalArgumentException(name() + ": range offset " + offsetBytes + " length " + lengthBytes
                    + " is outside the device of " + sizeBytes() + " bytes");
        }
    }
}
