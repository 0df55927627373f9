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
     * Writes {@code src} (a heap buffer, from its position to its limit) at offset 0 of an empty file,
     * leaving out every piece of {@link #SPARSE_PIECE_BYTES} that is all zeros but the last: the file
     * gets its full length and reads back the same, with holes where the zeros were. A checkpoint of
     * a CBT map that is mostly unwritten (an idle device, a young generation) then costs its written
     * pages and not 2 bytes per tracking block (8 MiB for a device of 1 TiB). A file system without
     * holes writes the zeros itself.
     */
    static void writeSkippingZeros(FileChannel ch, ByteBuffer src, Path path) throws IOException {
        byte[] a = src.array();
        int base = src.arrayOffset() + src.position();
        int length = src.remaining();
        int runStart = -1;
        for (int off = 0; off < length; off += SPARSE_PIECE_BYTES) {
            int len = Math.min(SPARSE_PIECE_BYTES, length - off);
            boolean last = off + len == length;
            boolean zero = !last && Arrays.mismatch(a, base + off, base + off + len, ZEROS, 0, len) < 0;
            if (!zero && runStart < 0) {
                runStart = off;
            }
            if ((zero || last) && runStart >= 0) {
                int end = zero ? off : length;
                writeFully(ch, src.slice(src.position() + runStart, end - runStart), runStart, path);
                runStart = -1;
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
