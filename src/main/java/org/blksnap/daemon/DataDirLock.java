package org.blksnap.daemon;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * The exclusive lock on {@code DATA_DIR/blksnapd.lock} that keeps a second daemon off a data
 * directory. The lock file holds the owner's pid for the refusal message. The OS drops the lock
 * when the process dies, so a crashed daemon leaves nothing to clean up.
 */
final class DataDirLock implements AutoCloseable {
    static final String FILE_NAME = "blksnapd.lock";

    private final FileChannel channel;
    private final FileLock lock;

    private DataDirLock(FileChannel channel, FileLock lock) {
        this.channel = channel;
        this.lock = lock;
    }

    /** Another daemon holds the data directory. */
    static final class HeldException extends IOException {
        HeldException(String message) {
            super(message);
        }
    }

    static DataDirLock acquire(Path dataDir) throws IOException {
        Path file = dataDir.resolve(FILE_NAME);
        FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ,
                StandardOpenOption.WRITE);
        FileLock lock;
        try {
            lock = ch.tryLock();
        } catch (OverlappingFileLockException e) {
            lock = null;
        } catch (IOException e) {
            ch.close();
            throw new IOException("cannot lock " + file + ": " + e.getMessage(), e);
        }
        if (lock == null) {
            String owner;
            try {
                owner = Files.readString(file, StandardCharsets.UTF_8).trim();
            } catch (IOException e) {
                owner = "";
            }
            ch.close();
            throw new HeldException("another blksnapd" + (owner.isEmpty() ? "" : " (pid " + owner + ")")
                    + " is already using the data directory " + dataDir + " (" + file
                    + " is locked); stop it first or give another --data-dir");
        }
        ch.truncate(0);
        ch.write(ByteBuffer.wrap((ProcessHandle.current().pid() + "\n").getBytes(StandardCharsets.UTF_8)), 0);
        ch.force(false);
        return new DataDirLock(ch, lock);
    }

    @Override
    public void close() throws IOException {
        try {
            lock.release();
        } finally {
            channel.close();
        }
    }
}
