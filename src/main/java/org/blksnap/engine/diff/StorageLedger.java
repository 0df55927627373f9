package org.blksnap.engine.diff;

import java.nio.file.Path;

/**
 * Where the engine notes the difference-storage files of live snapshots, so that after a crash the
 * files it created can be removed at the next start (snapshots do not survive a restart). The
 * persistent implementation lives in {@code engine.state}.
 *
 * <p>Implementations are thread-safe.
 */
public interface StorageLedger {
    /** Nothing is noted (persistence off). */
    StorageLedger NONE = new StorageLedger() {
        @Override
        public void creating(String owner, Path path) {
        }

        @Override
        public void given(String owner, Path path) {
        }

        @Override
        public void released(String owner) {
        }
    };

    /**
     * Notes durably, before the engine creates it, that {@code path} is created for snapshot
     * {@code owner}.
     *
     * @throws org.blksnap.engine.BlksnapException EIO if it cannot be noted (the file is then not created)
     */
    void creating(String owner, Path path);

    /** Notes that the user gave {@code path}, which exists, to snapshot {@code owner} (kept at the next start). */
    void given(String owner, Path path);

    /** Forgets every file of snapshot {@code owner} (it was destroyed). */
    void released(String owner);
}
