package org.blksnap.engine.diff;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicReference;
import org.blksnap.engine.Errno;

/**
 * A {@link DiffArea.Owner} for tests: records each corruption report as "device:ERRNO", keeps the
 * first errno as the snapshot's, and runs {@link #onReport} inside each report. Thread-safe.
 */
final class RecordingOwner implements DiffArea.Owner {
    /** Runs inside {@link #deviceCorrupted}, on the reporting thread. */
    volatile Runnable onReport = () -> { };
    final AtomicReference<Errno> snapshotCorruption = new AtomicReference<>();
    private final List<String> reports = new CopyOnWriteArrayList<>();

    @Override
    public void deviceCorrupted(String device, Errno errno, String message) {
        reports.add(device + ":" + errno);
        snapshotCorruption.compareAndSet(null, errno);
        onReport.run();
    }

    @Override
    public Errno corruption() {
        return snapshotCorruption.get();
    }

    List<String> reports() {
        return List.copyOf(reports);
    }
}
