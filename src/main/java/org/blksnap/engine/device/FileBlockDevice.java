package org.blksnap.engine.device;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
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
 * A buffered regular file on tmpfs also has a {@link #receiver()}: writes into ranges that hold
 * data already are read from their socket straight into a mapping of the file ({@link MappedWindows}).
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

        boolean covers(long start, long end) {
            return startBytes <= start && end <= endBytes;
        }
    }

    /** Remembers {@code [start, end)} as data, unless what is known changed since {@code seen} was read. */
    private void rememberData(KnownData seen, long start, long end) {
        if (knownData == seen) {
            knownData = new KnownData(start, end);
        }
    }

    /**
     * The mappings {@link #receiver()} writes into, or null when it has none (not a buffered regular
     * file on tmpfs, or no native calls to tell data from holes).
     */
    private final MappedWindows windows;
    private final Receiver receiver;
    /**
     * A range last found to be a hole (or past the file's end) by {@link #acceptsReceive}, and when:
     * receives stay off it for {@link #HOLE_MEMORY_NANOS} without asking the file again (a write that
     * fills it goes the ordinary way). A stale answer only sends a write the ordinary way.
     */
    private volatile KnownHole lastHole = KnownHole.NONE;
    static final long HOLE_MEMORY_NANOS = 1_000_000_000L;

    private record KnownHole(long startBytes, long endBytes, long foundNanos) {
        static final KnownHole NONE = new KnownHole(0, 0, 0);

        boolean holds(long start, long end, long nowNanos) {
            return start < endBytes && startBytes < end && nowNanos - foundNanos < HOLE_MEMORY_NANOS;
        }
    }

    /** Before and after punching a hole; a fresh object, so a lookup that began before sees a change. */
    private void forgetKnownData() {
        knownData = new KnownData(0, 0);
    }

    FileBlockDevice(Path path, FileChannel channel, FileChannel directChannel, long sizeBytes, int logicalBlockSize,
                    int minimumIoBytes, boolean regularFile, NativeIo nativeIo, int nativeHandle, boolean pagesInMemory) {
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
        boolean mapped = pagesInMemory && regularFile && directChannel == null && nativeHandle >= 0;
        this.windows = mapped ? new MappedWindows(path.toString(), channel, sizeBytes, nativeIo) : null;
        this.receiver = mapped ? new Receiver() {
            @Override
            public boolean accepts(long offsetBytes, int lengthBytes) {
                return acceptsReceive(offsetBytes, lengthBytes);
            }

            @Override
            public void receive(long offsetBytes, int lengthBytes, ByteSource source) throws IOException {
                FileBlockDevice.this.receive(offsetBytes, lengthBytes, source);
            }
        } : null;
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

    /**
     * On tmpfs only (see {@link MappedWindows} for why not elsewhere); it accepts ranges that hold data
     * already, so a receive never allocates a page (a full tmpfs would otherwise fail the socket read
     * rather than the write).
     */
    @Override
    public Receiver receiver() {
        return receiver;
    }

    /**
     * Whether the range lies in data, by {@link #knownData}, else by SEEK_DATA/SEEK_HOLE (which then
     * extend what is known), and the windows it needs may be mapped.
     */
    private boolean acceptsReceive(long offsetBytes, int lengthBytes) {
        if (lengthBytes <= 0 || offsetBytes < 0 || offsetBytes > sizeBytes - lengthBytes) {
            return false;
        }
        long end = offsetBytes + lengthBytes;
        if (!windows.available(offsetBytes) || !windows.available(end - 1)) {
            return false;
        }
        KnownData known = knownData;
        if (known.covers(offsetBytes, end)) {
            return true;
        }
        long now = System.nanoTime();
        if (lastHole.holds(offsetBytes, end, now)) {
            return false;
        }
        try {
            long fileEnd = channel.size();
            if (end > fileEnd) {
                lastHole = new KnownHole(fileEnd, Long.MAX_VALUE, now);
                return false;
            }
            long data = nativeIo.seekData(nativeHandle, offsetBytes);
            if (data != offsetBytes) {
                lastHole = new KnownHole(offsetBytes, data < 0 ? fileEnd : data, now);
                return false;
            }
            long hole = Math.min(nativeIo.seekHole(nativeHandle, offsetBytes), fileEnd);
            if (hole <= offsetBytes) {
                return false; // changed between the two calls
            }
            rememberData(known, offsetBytes, hole);
            if (end <= hole) {
                return true;
            }
            lastHole = new KnownHole(hole, end, now);
            return false;
        } catch (IOException e) {
            return false; // the ordinary write will say what is wrong
        }
    }

    /**
     * Reads the range from the source into the file's mapping (at most two windows: requests are far
     * smaller than one). When no window can be had (the limit reached since {@link #acceptsReceive},
     * or closed), through a buffer and {@link #write}.
     */
    private void receive(long offsetBytes, int lengthBytes, ByteSource source) throws IOException {
        checkRange(offsetBytes, lengthBytes);
        long split = Math.min(offsetBytes + lengthBytes, (offsetBytes / MappedWindows.WINDOW_BYTES + 1)
                * MappedWindows.WINDOW_BYTES);
        int first = (int) (split - offsetBytes);
        MemorySegment a = windows.slice(offsetBytes, first);
        MemorySegment b = first == lengthBytes ? MemorySegment.NULL : windows.slice(split, lengthBytes - first);
        if (a == null || b == null) {
            ByteBuffer buf = ByteBuffer.allocate(lengthBytes);
            source.readFully(buf);
            buf.flip();
            write(buf, offsetBytes);
            return;
        }
        source.readFully(a.asByteBuffer());
        if (b != MemorySegment.NULL) {
            source.readFully(b.asByteBuffer());
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
        if (known.covers(offsetBytes, end)) {
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
            rememberData(known, pos, Math.min(hole, fileEnd));
            if (!sink.extent(hole - pos, false)) {
                return;
            }
            pos = hole;
        }
    }

    @Override
    public void close() throws IOException {
        FirstFailure failures = new FirstFailure();
        if (windows != null) {
            failures.run(windows::close);
        }
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
