package org.blksnap.engine.state;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;

/**
 * Positional I/O and the atomic replacement of state files. Every {@link IOException} says what was
 * being done, on which path, at which offset and how many bytes.
 */
final class StateFiles {
    private StateFiles() {
    }

    /**
     * Replaces {@code target} with {@code content} so that a crash leaves either the old file or the
     * new one, never a torn one: writes {@code target.tmp}, forces it, renames it over {@code target}
     * and forces the directory.
     */
    static void replace(Path target, ByteBuffer content) throws IOException {
        Path tmp = target.resolveSibling(target.getFileName() + ".tmp");
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            writeFully(ch, content, 0, tmp);
            ch.force(true);
        }
        move(tmp, target);
    }

    /** Renames {@code from} over {@code to} atomically and forces the directory. */
    static void move(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            throw new IOException("cannot rename " + from + " to " + to + " atomically", e);
        }
        forceDirectory(to.getParent());
    }

    /** Forces a directory, so that a rename or a deletion in it is durable. */
    static void forceDirectory(Path dir) throws IOException {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException e) {
            throw new IOException("cannot sync directory " + dir + ": " + e.getMessage(), e);
        }
    }

    /** Writes all of {@code src} at {@code positionBytes}, looping until it is drained. */
    static void writeFully(FileChannel ch, ByteBuffer src, long positionBytes, Path path) throws IOException {
        int length = src.remaining();
        long pos = positionBytes;
        try {
            while (src.hasRemaining()) {
                pos += ch.write(src, pos);
            }
        } catch (IOException e) {
            throw new IOException("writing " + path + " at offset " + positionBytes + ", " + length + " bytes: "
                    + e.getMessage(), e);
        }
    }

    /** The pieces {@link #writeSkippingZeros} tests for zeros: 64 KiB, a multiple of any file system block. */
    static final int SPARSE_PIECE_BYTES = 64 * 1024;
    private static final byte[] ZEROS = new byte[SPARSE_PIECE_BYTES];

    /**
     * Writes the concatenation of {@code parts} (heap buffers, each from its position to its limit; not
     * changed) at offset 0 of an empty file, leaving out every piece of {@link #SPARSE_PIECE_BYTES}
     * (at offsets that are multiples of it) that is all zeros but the last: the file gets its full
     * length and reads back the same, with holes where the zeros were. A checkpoint of a CBT map that
     * is mostly unwritten (an idle device, a young generation) then costs its written pages and not 2
     * bytes per tracking block (8 MiB for a device of 1 TiB), and its maps are written from their own
     * arrays, not copied into one buffer first. A file system without holes writes the zeros itself.
     */
    static void writeSkippingZeros(FileChannel ch, ByteBuffer[] parts, Path path) throws IOException {
        long[] starts = new long[parts.length + 1];
        for (int i = 0; i < parts.length; i++) {
            starts[i + 1] = starts[i] + parts[i].remaining();
        }
        long length = starts[parts.length];
        long runStart = -1;
        for (long off = 0; off < length; off += SPARSE_PIECE_BYTES) {
            long end = Math.min(off + SPARSE_PIECE_BYTES, length);
            boolean last = end == length;
            boolean zero = !last && allZero(parts, starts, off, end);
            if (!zero && runStart < 0) {
                runStart = off;
            }
            if ((zero || last) && runStart >= 0) {
                writeRange(ch, parts, starts, runStart, zero ? off : length, path);
                runStart = -1;
            }
        }
    }

    /** Whether bytes [from, to) of the concatenation are all zero. */
    private static boolean allZero(ByteBuffer[] parts, long[] starts, long from, long to) {
        for (int i = 0; i < parts.length; i++) {
            long a = Math.max(from, starts[i]);
            long b = Math.min(to, starts[i + 1]);
            if (a < b) {
                ByteBuffer p = parts[i];
                int at = p.arrayOffset() + p.position() + (int) (a - starts[i]);
                int n = (int) (b - a);
                if (Arrays.mismatch(p.array(), at, at + n, ZEROS, 0, n) >= 0) {
                    return false;
                }
            }
        }
        return true;
    }

    /** Writes bytes [from, to) of the concatenation at the same offsets of the file. */
    private static void writeRange(FileChannel ch, ByteBuffer[] parts, long[] starts, long from, long to, Path path)
            throws IOException {
        for (int i = 0; i < parts.length; i++) {
            long a = Math.max(from, starts[i]);
            long b = Math.min(to, starts[i + 1]);
            if (a < b) {
                ByteBuffer p = parts[i];
                writeFully(ch, p.slice(p.position() + (int) (a - starts[i]), (int) (b - a)), a, path);
            }
        }
    }

    /**
     * Reads exactly {@code dst.remaining()} bytes at {@code positionBytes}.
     *
     * @return false if the file ended first (the bytes read so far stay in {@code dst})
     */
    static boolean readFully(FileChannel ch, ByteBuffer dst, long positionBytes, Path path) throws IOException {
        int length = dst.remaining();
        long pos = positionBytes;
        try {
            while (dst.hasRemaining()) {
                int n = ch.read(dst, pos);
                if (n < 0) {
                    return false;
                }
                pos += n;
            }
            return true;
        } catch (IOException e) {
            throw new IOException("reading " + path + " at offset " + positionBytes + ", " + length + " bytes: "
                    + e.getMessage(), e);
        }
    }

    /** Deletes a directory and everything in it (one level of files: a tracker's directory). */
    static void deleteTree(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return;
        }
        try (var files = Files.list(dir)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                Files.deleteIfExists(f);
            }
        }
        Files.deleteIfExists(dir);
        forceDirectory(dir.getParent());
    }
}
