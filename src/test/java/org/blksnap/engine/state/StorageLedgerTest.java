package org.blksnap.engine.state;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.blksnap.testing.Concurrently;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The ledger of difference-storage files under concurrent snapshots: every change is in the file
 * when the call returns, none is lost to a racing rewrite, and a start removes only what the engine
 * created.
 */
class StorageLedgerTest {
    @TempDir
    Path dir;

    private List<StorageLedgerDescriptor.Entry> onDisk() throws Exception {
        return StorageLedgerDescriptor.decode(ByteBuffer.wrap(Files.readAllBytes(dir.resolve(StorageLedgerFile.NAME))),
                "ledger");
    }

    @Test
    void concurrentSnapshotsNeverLoseAnEntryOrKeepAReleasedOne() throws Exception {
        StorageLedgerFile ledger = new StorageLedgerFile(dir);
        ledger.cleanUp();
        int snapshots = 32;
        Concurrently.onPlatformThreads(snapshots, s -> {
            String owner = "snap-" + s;
            ledger.creating(owner, dir.resolve(owner + ".a"));
            assertThat(onDisk()).as("%s: created file on disk when creating() returned", owner)
                    .anyMatch(e -> e.owner().equals(owner) && e.created());
            ledger.given(owner, dir.resolve(owner + ".b"));
            if (s % 2 != 0) {
                ledger.released(owner);
            }
        });
        List<StorageLedgerDescriptor.Entry> left = onDisk();
        assertThat(left).hasSize(snapshots);
        assertThat(left).extracting(StorageLedgerDescriptor.Entry::owner).allMatch(o ->
                Integer.parseInt(o.substring(5)) % 2 == 0);

        // the next start: engine files go, user files stay, the ledger is empty
        for (StorageLedgerDescriptor.Entry e : left) {
            Files.createFile(Path.of(e.path()));
        }
        new StorageLedgerFile(dir).cleanUp();
        for (StorageLedgerDescriptor.Entry e : left) {
            assertThat(Files.exists(Path.of(e.path()))).as(e.toString()).isEqualTo(!e.created());
        }
        assertThat(onDisk()).isEmpty();
    }
}
