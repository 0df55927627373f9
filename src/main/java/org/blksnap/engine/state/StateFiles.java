package org.blksnap.engine.state;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

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
