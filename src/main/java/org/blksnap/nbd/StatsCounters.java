package org.blksnap.nbd;

import java.util.concurrent.atomic.LongAdder;

/** The live counters behind one export's {@link ExportStats}. Thread-safe. */
final class StatsCounters {
    final LongAdder connections = new LongAdder();
    final LongAdder activeConnections = new LongAdder();
    final LongAdder requests = new LongAdder();
    final LongAdder errors = new LongAdder();
    final LongAdder bytesRead = new LongAdder();
    final LongAdder bytesWritten = new LongAdder();
    /** Where each request's latency goes ({@link NbdServer#observeRequests}). */
    volatile RequestObserver observer = RequestObserver.NONE;

    ExportStats snapshot() {
        return new ExportStats(connections.sum(), activeConnections.sum(), requests.sum(), errors.sum(),
                bytesRead.sum(), bytesWritten.sum());
    }
}
