package org.blksnap.backup;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/** The write-fsync-rename steps that make a file appear whole or not at all. Stateless. */
final class Durable {
    private Durable() {
    }

    /** Flushes a directory's entries (a rename into it) to stable storage. */
    static void fsyncDirectory(Path dir) throws IOException {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        }
    }

    /**
     * Writes {@code content} to {@code tmp}, fsyncs it, renames it to {@code target} and fsyncs the
     * target's directory: after a crash, {@code target} is either absent (or its old content) or whole.
     */
    static void writeAtomically(Path tmp, Path target, byte[] content) throws IOException {
        writeDurably(tmp, content);
        Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
        fsyncDirectory(target.getParent());
    }

    /** Writes {@code content} to {@code file} (created or truncated) and fsyncs it. */
    static void writeDurably(Path file, byte[] content) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE)) {
            ByteBuffer buf = ByteBuffer.wrap(content);
            long pos = 0;
            while (buf.hasRemaining()) {
                pos += ch.write(buf, pos);
            }
            ch.force(true);
        }
    }
}
