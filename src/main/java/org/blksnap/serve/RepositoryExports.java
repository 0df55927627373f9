package org.blksnap.serve;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Semaphore;
import java.util.function.Consumer;
import org.blksnap.backup.Point;
import org.blksnap.backup.PointReader;
import org.blksnap.backup.Repository;
import org.blksnap.backup.RepositoryException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.nbd.Export;
import org.blksnap.nbd.ExportInfo;
import org.blksnap.nbd.ExportProvider;

/**
 * Every point of a repository as an export named {@code POINT_ID/DEVICE}. The repository is read
 * again on every LIST and open, so a point that a backup adds while the server runs is an export at
 * once, and a point pruned meanwhile is no longer offered (connections already on it go on until
 * its packs are gone; then their reads fail with EIO).
 *
 * <p>A point's reader, read-ahead and (with {@code writable}) overlay are made at its first open and
 * kept until {@link #close}: all connections to an export share one device, so a client that
 * reconnects, or uses several connections, sees its own writes.
 *
 * <p>Thread-safe: the server calls {@link #list} and {@link #open} from connection threads.
 */
final class RepositoryExports implements ExportProvider, AutoCloseable {
    private final Repository repo;
    private final ChunkCache cache;
    private final ExecutorService executor;
    private final Semaphore readAheadPermits;
    private final long readAheadBytes;
    private final boolean writable;
    private final Path overlayDir;
    private final ServeLogs logs;
    private final Consumer<String> warn;
    private final Map<String, Served> served = new ConcurrentHashMap<>();

    /** One point's device as served: the read-only device and, when writable, its overlay. */
    record Served(Point point, PointDevice device, Overlay overlay) {
        BlockDevice exported() {
            return overlay != null ? overlay : device;
        }
    }

    RepositoryExports(Repository repo, ChunkCache cache, ExecutorService executor, Semaphore readAheadPermits,
                      long readAheadBytes, boolean writable, Path overlayDir, ServeLogs logs, Consumer<String> warn) {
        this.repo = repo;
        this.cache = cache;
        this.executor = executor;
        this.readAheadPermits = readAheadPermits;
        this.readAheadBytes = readAheadBytes;
        this.writable = writable;
        this.overlayDir = overlayDir;
        this.logs = logs;
        this.warn = warn;
    }

    /** {@code POINT_ID/DEVICE}. */
    static String exportName(Point p) {
        return p.id() + "/" + p.device();
    }

    /** {@code device DEVICE, TIME, KIND, SIZE bytes} (and whether writes go to an overlay). */
    String description(Point p) {
        return "device " + p.device() + ", " + p.time() + ", " + p.kind() + ", " + p.sizeBytes() + " bytes"
                + (writable ? ", writable (writes go to a temporary overlay)" : ", read-only");
    }

    /** The points served now, oldest first; a manifest that does not read is named to the warning sink. */
    List<Point> points() {
        try {
            PointReader.Listing l = PointReader.list(repo);
            l.damaged().forEach(m -> warn.accept(m + "; not served"));
            return l.points();
        } catch (RepositoryException e) {
            warn.accept("cannot list the points: " + e.getMessage());
            return List.of();
        }
    }

    @Override
    public List<ExportInfo> list() {
        List<ExportInfo> out = new ArrayList<>();
        for (Point p : points()) {
            out.add(new ExportInfo(exportName(p), description(p)));
        }
        return out;
    }

    @Override
    public Export open(String name) {
        int slash = name.indexOf('/');
        if (slash <= 0) {
            return null;
        }
        String id = name.substring(0, slash);
        Point p;
        try {
            p = repo.point(id);
        } catch (RepositoryException e) {
            if (e.code() == RepositoryException.Code.NOT_FOUND) {
                return null;
            }
            throw new IllegalStateException(e.getMessage(), e);
        }
        if (!name.equals(exportName(p))) {
            return null;
        }
        Served s = served(p);
        String description = description(p);
        return new Export() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public String description() {
                return description;
            }

            @Override
            public BlockDevice device() {
                return s.exported();
            }

            @Override
            public boolean readOnly() {
                return !writable;
            }

            @Override
            public boolean sparseReads() {
                // the allocation map is the index tree, whose nodes are cached: cheap
                return !writable;
            }
        };
    }

    private Served served(Point p) {
        String key = exportName(p);
        Served s = served.get(key);
        if (s != null) {
            return s;
        }
        synchronized (this) {
            s = served.get(key);
            if (s != null) {
                return s;
            }
            try {
                PointReader reader = PointReader.open(repo, p.id(), cache);
                ReadAhead ra = new ReadAhead(reader, executor, readAheadPermits, readAheadBytes);
                PointDevice device = new PointDevice(key, reader, executor, ra, logs);
                Overlay overlay = writable ? Overlay.create(device, overlayDir, p.id()) : null;
                s = new Served(p, device, overlay);
            } catch (RepositoryException e) {
                throw new IllegalStateException(e.getMessage(), e);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot create the overlay of " + key + " in " + overlayDir + ": "
                        + e.getMessage(), e);
            }
            served.put(key, s);
            return s;
        }
    }

    /** The devices opened so far, by export name (the stats line and the tests). */
    Map<String, Served> served() {
        return Map.copyOf(served);
    }

    /**
     * Closes every overlay (their files are unlinked already: the space is freed now). The served
     * devices stay listed, so the counters can still be read after the server stopped.
     */
    @Override
    public synchronized void close() throws IOException {
        IOException first = null;
        for (Served s : served.values()) {
            if (s.overlay() != null) {
                try {
                    s.overlay().close();
                } catch (IOException e) {
                    if (first == null) {
                        first = e;
                    } else {
                        first.addSuppressed(e);
                    }
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
