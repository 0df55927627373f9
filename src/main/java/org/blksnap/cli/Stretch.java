package org.blksnap.cli;

import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonTypeInfo;
import com.fasterxml.jackson.annotation.JsonTypeName;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.blksnap.ctrl.api.AbsolutePath;
import org.blksnap.ctrl.api.Replies;
import org.blksnap.ctrl.api.Requests;
import org.blksnap.ctrl.api.Size;

/**
 * {@code snapshot stretch}: grows a snapshot's storage on its events until it is destroyed. Each
 * low_free_space gets a new file {@code DIR/diff_storage#N} of the requested size (created
 * preallocated by the daemon) while the total stays within the limit; when DIR's filesystem has less
 * room, as much as fits; when it has none, the failure is reported once and what is owed is tried
 * again at every poll until it fits or the snapshot overflows. Corrupted events are reported. Ends
 * once the snapshot is gone (ESRCH), after removing the files it created.
 *
 * <p>Every step is reported as a {@link Report}: one JSON line with {@code --json}, else text. Not
 * thread-safe: one instance per run.
 */
final class Stretch {
    private static final int SECTOR_BYTES = 512;
    /** The smallest file tried when a filesystem is nearly full, in bytes. */
    private static final long SMALLEST_TRY_BYTES = 64L << 10;

    /** What the stretch did, one line of its output each. */
    @JsonTypeInfo(use = JsonTypeInfo.Id.NAME, include = JsonTypeInfo.As.PROPERTY, property = "stretch")
    sealed interface Report {
    }

    /** A file was appended: {@code sizeBytes} of the {@code requestedBytes} owed. */
    @JsonTypeName("appended")
    record Appended(String file, long sizeBytes, long requestedBytes, long allocatedBytes) implements Report {
    }

    /** Nothing could be appended; reported once until an append works again. */
    @JsonTypeName("grow_failed")
    record GrowFailed(String file, long sizeBytes, String errnoName, int errno, String message, long allocatedBytes)
            implements Report {
    }

    /** The limit is reached: no more storage will be appended. */
    @JsonTypeName("limit_reached")
    record LimitReached(long allocatedBytes, long limitBytes) implements Report {
    }

    /** An event other than low_free_space (a corruption). */
    @JsonTypeName("event")
    record EventSeen(Replies.Event event) implements Report {
    }

    /** The snapshot is gone: the stretch ends. */
    @JsonTypeName("snapshot_gone")
    record SnapshotGone(@JsonIgnore UUID id, long allocatedBytes, int files) implements Report {
    }

    private final Cli cli;
    private final UUID id;
    private final Path dir;
    private final long limitBytes;
    private final long pollMs;
    private final List<Path> created = new ArrayList<>();
    private long allocatedBytes;
    /** Bytes of the last low_free_space request not appended yet (the filesystem had no room). */
    private long owedBytes;
    private boolean failureReported;
    private boolean limitReported;

    /**
     * @param dir    an existing directory, absolute
     * @param pollMs how long one wait for an event lasts; what is owed is retried after each
     */
    Stretch(Cli cli, UUID id, Path dir, long limitBytes, long pollMs) {
        this.cli = cli;
        this.id = id;
        this.dir = dir;
        this.limitBytes = limitBytes;
        this.pollMs = pollMs;
    }

    /**
     * Runs until the snapshot is gone; always removes the files it created.
     *
     * @throws ControlClient.RemoteException an error other than the ones it handles (the wait failed)
     */
    void run() throws Exception {
        try {
            while (watch()) {
                // one event or one poll per turn
            }
            report(new SnapshotGone(id, allocatedBytes, created.size()));
        } finally {
            for (Path p : created) {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException e) {
                    cli.warn("stretch: cannot remove " + p + ": " + e.getMessage());
                }
            }
        }
    }

    /** Waits for one event and acts on it. Returns false once the snapshot is gone. */
    private boolean watch() throws Exception {
        Replies.Event event;
        try {
            event = cli.call(new Requests.WaitEvent(id, pollMs)).event();
        } catch (ControlClient.RemoteException e) {
            return switch (e.errnoName()) {
                // No event: if a request is still owed (the filesystem was full), try again, so
                // storage freed there meanwhile is used before the snapshot overflows.
                case "ENOENT" -> owedBytes == 0 || grow();
                case "ESRCH" -> false;
                default -> throw e;
            };
        }
        switch (event) {
            case Replies.LowFreeSpace l -> {
                long size = Math.min(l.requestedSectors() * SECTOR_BYTES, limitBytes - allocatedBytes);
                size -= size % SECTOR_BYTES;
                if (size <= 0) {
                    if (!limitReported) {
                        report(new LimitReached(allocatedBytes, limitBytes));
                        limitReported = true;
                    }
                    return true;
                }
                owedBytes = size; // a failure already reported stays reported until an append works
                return grow();
            }
            case Replies.Corrupted c -> {
                owedBytes = 0; // overflowed for good: more storage cannot help
                report(new EventSeen(c));
                return true;
            }
            case Replies.GenerationReset g -> {
                report(new EventSeen(g)); // for the backup tool: the next backup must be full
                return true;
            }
        }
    }

    /** Appends what is owed, or as much of it as fits. Returns false if the snapshot is gone. */
    private boolean grow() throws Exception {
        Path file = dir.resolve("diff_storage#" + created.size());
        long size = owedBytes;
        long got;
        try {
            got = appendShrinking(file, size);
        } catch (ControlClient.RemoteException e) {
            if ("ESRCH".equals(e.errnoName())) {
                return false;
            }
            if (!failureReported) {
                // Keep watching: the snapshot lives on until its storage overflows, and the
                // corrupted event, if it comes, is reported like any other.
                report(new GrowFailed(file.toString(), size, e.errnoName(), e.errno(), e.getMessage(), allocatedBytes));
                failureReported = true;
            }
            return true;
        }
        created.add(file);
        allocatedBytes += got;
        owedBytes -= got;
        failureReported = false;
        report(new Appended(file.toString(), got, size, allocatedBytes));
        return true;
    }

    /**
     * Appends a new file of {@code size} bytes; when its filesystem has no room for that much
     * (ENOSPC), tries half the size, and so on down to a sixteenth of it (at least 64 KiB), so a
     * nearly full filesystem still gives what it has. Returns the size appended.
     *
     * @throws ControlClient.RemoteException the last refusal, when nothing could be appended
     */
    private long appendShrinking(Path file, long size) throws Exception {
        long floor = Math.max(SMALLEST_TRY_BYTES, size / 16);
        long s = size;
        while (true) {
            try {
                cli.call(new Requests.AppendStorage(id, new AbsolutePath(file), Size.ofBytes(s), List.of()));
                return s;
            } catch (ControlClient.RemoteException e) {
                long half = s / 2 / SECTOR_BYTES * SECTOR_BYTES;
                if (!"ENOSPC".equals(e.errnoName()) || half < floor) {
                    throw e;
                }
                s = half;
            }
        }
    }

    private void report(Report r) {
        cli.print(r, TextForms::stretch);
    }
}
