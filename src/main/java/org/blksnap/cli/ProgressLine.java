package org.blksnap.cli;

import java.io.PrintWriter;
import java.util.Locale;
import org.blksnap.backup.Repository;
import org.blksnap.ctrl.api.WireJson;

/**
 * Progress of a long command on stderr: on a terminal one line rewritten in place (bytes done and
 * total, rate, ETA) at most 4 times a second; with {@code --json} a {@code {"progress":{...}}} line
 * at most once a second; otherwise nothing. Thread-safe: {@link #update} may be called from any
 * thread, often.
 */
final class ProgressLine implements Repository.Progress {
    private static final long TERMINAL_EVERY_NANOS = 250_000_000L;
    private static final long JSON_EVERY_NANOS = 1_000_000_000L;

    /** One JSON progress line. */
    record Progress(String what, long doneBytes, long totalBytes, long bytesPerSecond) {
    }

    record ProgressLineJson(Progress progress) {
    }

    private final PrintWriter err;
    private final String what;
    private final boolean json;
    private final boolean terminal;
    private final long startNanos = System.nanoTime();
    private long lastNanos;

    private ProgressLine(PrintWriter err, String what, boolean json, boolean terminal) {
        this.err = err;
        this.what = what;
        this.json = json;
        this.terminal = terminal;
    }

    /** The progress of {@code what} for this run: nothing unless on a terminal or with --json. */
    static Repository.Progress of(Cli cli, String what) {
        boolean terminal = cli.terminal();
        if (!cli.json() && !terminal) {
            return Repository.Progress.NONE;
        }
        return new ProgressLine(cli.err(), what, cli.json(), terminal && !cli.json());
    }

    @Override
    public synchronized void update(long doneBytes, long totalBytes) {
        long now = System.nanoTime();
        boolean last = doneBytes >= totalBytes;
        if (!last && now - lastNanos < (json ? JSON_EVERY_NANOS : TERMINAL_EVERY_NANOS)) {
            return;
        }
        lastNanos = now;
        double seconds = Math.max(1e-3, (now - startNanos) / 1e9);
        long rate = (long) (doneBytes / seconds);
        if (json) {
            err.println(WireJson.write(new ProgressLineJson(new Progress(what, doneBytes, totalBytes, rate))));
        } else if (terminal) {
            long eta = rate > 0 ? (totalBytes - doneBytes) / rate : 0;
            err.print(String.format(Locale.ROOT, "\r%s: %d/%d MiB, %.1f MiB/s, ETA %ds   ", what, doneBytes >> 20,
                    totalBytes >> 20, rate / 1048576.0, eta));
            if (last) {
                err.println();
            }
        }
        err.flush();
    }
}
