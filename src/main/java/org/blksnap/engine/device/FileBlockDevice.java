package org.blksnap.engine.device;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import org.blksnap.engine.BlockDevice;
import org.blksnap.util.DirectBuffers;
import org.blksnap.util.FirstFailure;

/**
 * A block device over a regular file or a Linux block device node, with positional
 * {@link FileChannel} I/O. Optionally O_DIRECT: aligned requests then go through a direct channel,
 * unaligned ones through a buffered channel on the same file (the kernel keeps the two coherent).
 * Regular files get holes punched on discard and an allocation map from SEEK_DATA/SEEK_HOLE.
 */
final class FileBlockDevice implements BlockDevice {

    private final Path path;
    private final FileChannel channel;
    private final FileChannel directChannel;
    private final long sizeBytes;
    private final int logicalBlockSize;
    private final int minimumIoBytes;
    private final boolean regularFile;
    private final NativeIo nativeIo;
    private final int nativeHandle;
    /** {@link #send}, or null when the kernel may not send this device's bytes (see {@link #sender()}). */
    private final Sender sender;
    /**
     * A range known to be all data, from an earlier SEEK_HOLE: writes never turn data into holes, so
     * it stays true until a hole is punched here (discard, writeZeroes), which resets it. On tmpfs a
     * SEEK_HOLE walks the page cache up to the next hole (the end of a fully written file), so
     * without this every large structured READ paid a scan of the rest of the file. A stale answer
     * can only say "data" for a hole, which is always safe.
     */
    private volatile KnownData knownData = KnownData.NONE;

    private record KnownData(long startBytes, long endBytes) {
        static final KnownData NONE = new KnownData(0, 0);
    }

    /** Before and after punching a hole; a fresh object, so a lookup that began before sees a change. */
    private void forgetKnownData() {
        knownData = new KnownData(0, 0);
    }

    FileBlockDevice(Path path, FileChannel channel, FileChannel directChannel, long sizeBytes, int logicalBlockSize,
                    int minimumIoBytes, boolean regularFile, NativeIo nativeIo, int nativeHandle) {
        this.path = path;
        this.channel = channel;
        this.directChannel = directChannel;
        this.sizeBytes = sizeBytes;
        this.logicalBlockSize = logicalBlockSize;
        this.minimumIoBytes = minimumIoBytes;
        this.regularFile = regularFile;
        this.nativeIo = nativeIo;
        this.nativeHandle = nativeHandle;
        this.sender = regularFile && directChannel == null ? this::send : null;
    }

    @Override
    public String name() {
        return path.toString();
    }

    @Override
    public int kernelCopyHandle() {
        return regularFile && nativeIo == NativeIo.system() ? nativeHandle : -1;
    }

    /**
     * Only a buffered regular file: its page cache holds what a read would return. One file range per
     * send; bytes past the file's end (a file shorter than the device) go out as zeros, as reads give
     * them.
     */
    @Override
    public Sender sender() {
        return sender;
    }

    private void send(long offsetBytes, int lengthBytes, ByteSink sink) throws IOException {
        checkRange(offsetBytes, lengthBytes);
        sink.file(channel, offsetBytes, lengthBytes);
    }

    @Override
    public long sizeBytes() {
        return sizeBytes;
    }

    @Override
    public int logicalBlockSize() {
        return logicalBlockSize;
    }

    @Override
    public int minimumIoBytes() {
        return minimumIoBytes;
    }

    private FileChannel channelFor(ByteBuffer buf, long offsetBytes) {
        if (directChannel != null && buf.isDirect() && offsetBytes % logicalBlockSize == 0
                && buf.remaining() % logicalBlockSize == 0 && DirectBuffers.isAligned(buf, logicalBlockSize)) {
            return directChannel;
        }
        return channel;
    }

    @Override
    public void read(ByteBuffer dst, long offsetBytes) throws IOException {
        int length = dst.remaining();
        checkRange(offsetBytes, length);
        FileChannel ch = channelFor(dst, offsetBytes);
        long pos = offsetBytes;
        try {
            while (dst.hasRemaining()) {
                int n = ch.read(dst, pos);
                if (n < 0) {
                    // Past the end of a file shorter than the device: reads as zeros.
                    while (dst.hasRemaining()) {
                        dst.put((byte) 0);
                    }
                    break;
                }
                pos += n;
            }
        } catch (IOException e) {
            throw new IOException("read of " + path + " at offset " + offsetBytes + " length " + length + " failed: " + e.getMessage(), e);
        }
    }

    @Override
    public void write(ByteBuffer src, long offsetBytes) throws IOException {
        int length = src.remaining();
        checkRange(offsetBytes, length);
        FileChannel ch = channelFor(src, offsetBytes);
        long pos = offsetBytes;
        try {
            while (src.hasRemaining()) {
                pos += ch.write(src, pos);
            }
        } catch (IOException e) {
            throw new IOException("write of " + path + " at offset " + offsetBytes + " length " + length + " failed: " + e.getMessage(), e);
        }
    }

    @Override
    public void flush() throws IOException {
        try {
            channel.force(false);
        } catch (IOException e) {
            throw new IOException("flush of " + path + " failed: " + e.getMessage(), e);
        }
    }

    @Override
    public void discard(long offsetBytes, long lengthBytes) throws IOException {
        checkRange(offsetBytes, lengthBytes);
        if (regularFile && nativeHandle >= 0 && lengthBytes > 0) {
            forgetKnownData();
            nativeIo.punchHole(nativeHandle, offsetBytes, lengthBytes);
            forgetKnownData();
        }
    }

    @Override
    public boolean fastZeroes() {
        return regularFile && nativeHandle >= 0;
    }

    @Override
    public void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) throws IOException {
        checkRange(offsetBytes, lengthBytes);
        if (lengthBytes == 0) {
            return;
        }
        if (regularFile && nativeHandle >= 0) {
            forgetKnownData();
            nativeIo.punchHole(nativeHandle, offsetBytes, lengthBytes);
            forgetKnownData();
            if (!mayUnmap) {
                nativeIo.preallocate(nativeHandle, offsetBytes, lengthBytes);
            }
            return;
        }
        DirectBuffers.writeZeros(offsetBytes, lengthBytes, this::write);
    }

    @Override
    public void mapAllocation(long offsetBytes, long lengthBytes, ExtentSink sink) throws IOException {
        long end = Math.min(sizeBytes, offsetBytes + lengthBytes);
        if (!regularFile || nativeHandle < 0) {
            sink.extent(end - offsetBytes, false);
            return;
        }
        KnownData known = knownData;
        if (known.startBytes() <= offsetBytes && end <= known.endBytes()) {
            sink.extent(known.endBytes() - offsetBytes, false); // as SEEK_HOLE would: up to the hole
            return;
        }
        long fileEnd = channel.size();
        long pos = offsetBytes;
        while (pos < end) {
            if (known.startBytes() <= pos && pos < known.endBytes()) {
                if (!sink.extent(known.endBytes() - pos, false)) {
                    return;
                }
                pos = known.endBytes();
                continue;
            }
            if (pos >= fileEnd) {
                sink.extent(sizeBytes - pos, true);
                return;
            }
            long data = nativeIo.seekData(nativeHandle, pos);
            if (data < 0 || data >= fileEnd) {
                sink.extent(sizeBytes - pos, true);
                return;
            }
            if (data > pos) {
                if (!sink.extent(data - pos, true)) {
                    return;
                }
                pos = data;
                continue;
            }
            long hole = Math.min(nativeIo.seekHole(nativeHandle, pos), sizeBytes);
            if (hole <= pos) {
                hole = sizeBytes;
            }
            if (knownData == known) {
                knownData = new KnownData(pos, Math.min(hole, fileEnd));
            }
            if (!sink.extent(hole - pos, false)) {
                return;
            }
            pos = hole;
        }
    }

    @Override
    public void close() throws IOException {
        FirstFailure failures = new FirstFailure();
        failures.run(channel::close);
        if (directChannel != null) {
            failures.run(directChannel::close);
        }
        if (nativeHandle >= 0) {
            nativeIo.close(nativeHandle);
        }
        failures.throwIfAny(IOException.class, e -> new IOException("closing " + path + " failed: " + e.getMessage(), e));
    }

    @Override
    public String toString() {
        return "FileBlockDevice[" + path + ", " + sizeBytes + " bytes]";
    }
}
