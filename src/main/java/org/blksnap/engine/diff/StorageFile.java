package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.device.NativeIo;

/**
 * One file or block device of a difference storage, written through the page cache. The module
 * wrote chunks with REQ_FUA; a snapshot that ends with its holder gains nothing from that (the copy is
 * read back from the same page cache, and no crash leaves a snapshot to read it from), so the port
 * does not pay a device flush per copied chunk (docs/engine.md, "Copied chunks are not written with
 * FUA"). {@link #force} makes it durable when an image client flushes.
 */
final class StorageFile implements AutoCloseable {
    private final Path path;
    private final Object fileKey;
    private final FileChannel channel;
    private final long sizeBytes;
    private final NativeIo nativeIo;
    private final int kernelHandle;

    StorageFile(Path path, Object fileKey, FileChannel channel, long sizeBytes) {
        this(path, fileKey, channel, sizeBytes, NativeIo.unsupported(), -1);
    }

    /** @param kernelHandle a {@code nativeIo} handle open for writing, for {@link KernelCopy}; -1 if none (closed with the file) */
    StorageFile(Path path, Object fileKey, FileChannel channel, long sizeBytes, NativeIo nativeIo, int kernelHandle) {
        this.path = path;
        this.fileKey = fileKey;
        this.channel = channel;
        this.sizeBytes = sizeBytes;
        this.nativeIo = nativeIo;
        this.kernelHandle = kernelHandle;
    }

    /** The handle of {@link NativeIo#system()} that in-kernel copies write to, or -1. */
    int kernelHandle() {
        return kernelHandle;
    }

    Path path() {
        return path;
    }

    /** Identity of the underlying file (device + inode), to find overlapping appends of one file. */
    Object fileKey() {
        return fileKey;
    }

    long sizeBytes() {
        return sizeBytes;
    }

    void read(ByteBuffer dst, long offsetBytes) throws IOException {
        DiffIo.readFully(channel, path, dst, offsetBytes);
    }

    /**
     * Hands {@code lengthBytes} from {@code offsetBytes} to {@code sink} as a range of this file, which
     * the kernel may send from its page cache (the storage is always written through it, never with
     * O_DIRECT, so the page cache holds what a read would return).
     */
    void send(BlockDevice.ByteSink sink, long offsetBytes, int lengthBytes) throws IOException {
        DiffIo.sendFully(channel, path, sink, offsetBytes, lengthBytes);
    }

    void write(ByteBuffer src, long offsetBytes) throws IOException {
        DiffIo.writeFully(channel, path, src, offsetBytes);
    }

    void force() throws IOException {
        DiffIo.force(channel, path);
    }

    @Override
    public void close() throws IOException {
        try {
            channel.close();
        } finally {
            if (kernelHandle >= 0) {
                nativeIo.close(kernelHandle);
            }
        }
    }
}
