package org.blksnap.nbd;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;

/**
 * A file channel whose bytes from {@code failAtBytes} on cannot be read (as a disk with a bad
 * sector): positional reads and transfers stop there and then throw {@code IOException}. Everything
 * else goes to the real channel. For the error path of replies sent from a file.
 */
final class FailingFileChannel extends FileChannel {
    private final FileChannel real;
    private final long failAtBytes;

    FailingFileChannel(FileChannel real, long failAtBytes) {
        this.real = real;
        this.failAtBytes = failAtBytes;
    }

    @Override
    public long transferTo(long position, long count, WritableByteChannel target) throws IOException {
        if (position >= failAtBytes) {
            throw new IOException("Input/output error (test: bytes from " + failAtBytes + " are unreadable)");
        }
        return real.transferTo(position, Math.min(count, failAtBytes - position), target);
    }

    @Override
    public int read(ByteBuffer dst, long position) throws IOException {
        if (position >= failAtBytes) {
            throw new IOException("Input/output error (test: bytes from " + failAtBytes + " are unreadable)");
        }
        int allowed = (int) Math.min(dst.remaining(), failAtBytes - position);
        ByteBuffer part = dst.slice(dst.position(), allowed);
        int n = real.read(part, position);
        if (n > 0) {
            dst.position(dst.position() + n);
        }
        return n;
    }

    @Override
    public int read(ByteBuffer dst) {
        throw new UnsupportedOperationException();
    }

    @Override
    public long read(ByteBuffer[] dsts, int offset, int length) {
        throw new UnsupportedOperationException();
    }

    @Override
    public int write(ByteBuffer src) {
        throw new UnsupportedOperationException();
    }

    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) {
        throw new UnsupportedOperationException();
    }

    @Override
    public int write(ByteBuffer src, long position) throws IOException {
        return real.write(src, position);
    }

    @Override
    public long position() throws IOException {
        return real.position();
    }

    @Override
    public FileChannel position(long newPosition) throws IOException {
        real.position(newPosition);
        return this;
    }

    @Override
    public long size() throws IOException {
        return real.size();
    }

    @Override
    public FileChannel truncate(long size) throws IOException {
        real.truncate(size);
        return this;
    }

    @Override
    public void force(boolean metaData) throws IOException {
        real.force(metaData);
    }

    @Override
    public long transferFrom(ReadableByteChannel src, long position, long count) {
        throw new UnsupportedOperationException();
    }

    @Override
    public MappedByteBuffer map(MapMode mode, long position, long size) {
        throw new UnsupportedOperationException();
    }

    @Override
    public FileLock lock(long position, long size, boolean shared) {
        throw new UnsupportedOperationException();
    }

    @Override
    public FileLock tryLock(long position, long size, boolean shared) {
        throw new UnsupportedOperationException();
    }

    @Override
    protected void implCloseChannel() throws IOException {
        real.close();
    }
}
