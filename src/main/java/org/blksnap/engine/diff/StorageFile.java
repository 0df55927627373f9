package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;

/**
 * One file or block device of a difference storage, opened with O_DSYNC so that a copied chunk is
 * on stable storage when its write returns (the module wrote chunks with REQ_FUA).
 */
final class StorageFile implements AutoCloseable {
    private final Path path;
    private final Object fileKey;
    private final FileChannel channel;
    private final long sizeBytes;

    StorageFile(Path path, Object fileKey, FileChannel channel, long sizeBytes) {
        this.path = path;
        this.fileKey = fileKey;
        this.channel = channel;
        this.sizeBytes = sizeBytes;
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

    void write(ByteBuffer src, long offsetBytes) throws IOException {
        DiffIo.writeFully(channel, path, src, offsetBytes);
    }

    void force() throws IOException {
        DiffIo.force(channel, path);
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
