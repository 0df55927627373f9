package org.blksnap.engine.state;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.diff.StorageLedger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The ledger of difference-storage files ({@link StorageLedgerDescriptor}) in the state directory.
 * At start, {@link #cleanUp} removes the files the engine created for snapshots that did not
 * survive (the daemon stopped without destroying them), keeps the ones the user gave, and empties
 * the ledger. Thread-safe: one lock around the list and its rewrite.
 */
final class StorageLedgerFile implements StorageLedger {
    private static final Logger LOG = LoggerFactory.getLogger(StorageLedgerFile.class);
    static final String NAME = "storage-ledger";

    private final Path file;
    private final ReentrantLock lock = new ReentrantLock();
    private final List<StorageLedgerDescriptor.Entry> entries = new ArrayList<>();

    StorageLedgerFile(Path stateDir) {
        this.file = stateDir.resolve(NAME);
    }

    /** Removes the engine's files left by the last run, logs the user's, and empties the ledger. */
    void cleanUp() throws IOException {
        lock.lock();
        try {
            List<StorageLedgerDescriptor.Entry> left = List.of();
            try {
                long size = Files.size(file);
                if (size > StorageLedgerDescriptor.MAX_FILE_BYTES) {
                    throw new StateCorruptException(file + ": " + size + " bytes, more than a ledger can hold");
                }
                left = StorageLedgerDescriptor.decode(ByteBuffer.wrap(Files.readAllBytes(file)), file.toString());
            } catch (NoSuchFileException e) {
                // a first start
            } catch (StateCorruptException e) {
                LOG.warn("difference-storage ledger unreadable, no file is removed: {}", e.getMessage());
            }
            for (StorageLedgerDescriptor.Entry e : left) {
                Path p = Path.of(e.path());
                if (!e.created()) {
                    LOG.info("difference-storage file {} of snapshot {} (given by the user) is kept; the snapshot did"
                            + " not survive the restart", p, e.owner());
                } else if (Files.isRegularFile(p)) {
                    Files.delete(p);
                    LOG.info("difference-storage file {} that blksnap created for snapshot {} removed; the snapshot did"
                            + " not survive the restart", p, e.owner());
                }
            }
            entries.clear();
            rewrite();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void creating(String owner, Path path) {
        change(() -> entries.add(new StorageLedgerDescriptor.Entry(owner, path.toString(), true)), true);
    }

    @Override
    public void given(String owner, Path path) {
        change(() -> entries.add(new StorageLedgerDescriptor.Entry(owner, path.toString(), false)), false);
    }

    @Override
    public void released(String owner) {
        change(() -> entries.removeIf(e -> e.owner().equals(owner)), false);
    }

    private void change(Runnable edit, boolean mustStick) {
        lock.lock();
        try {
            edit.run();
            rewrite();
        } catch (IOException | RuntimeException e) {
            if (mustStick) {
                throw new BlksnapException(Errno.EIO, "cannot note the storage file in " + file + ": " + e.getMessage(), e);
            }
            LOG.warn("difference-storage ledger {} not updated: {}", file, e.toString());
        } finally {
            lock.unlock();
        }
    }

    private void rewrite() throws IOException {
        StateFiles.replace(file, StorageLedgerDescriptor.encode(entries));
    }
}
