package org.blksnap.nbd;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.device.BlockDevices;

/**
 * An {@link ExportProvider} for tests: exports backed by sparse files, each optionally
 * read-only and with a {@code qemu:dirty-bitmap:NAME} context marking fixed ranges dirty.
 */
final class TestExports implements ExportProvider, AutoCloseable {

    /** A dirty bitmap of fixed dirty ranges ({offset, length} pairs, sorted, non-overlapping). */
    record DirtyBitmap(String name, long sizeBytes, long[][] dirtyRanges) implements MetaContext {
        @Override
        public void extents(long offsetBytes, long lengthBytes, StatusSink sink) {
            long pos = offsetBytes;
            for (long[] range : dirtyRanges) {
                long start = range[0];
                long end = range[0] + range[1];
                if (end <= pos) {
                    continue;
                }
                if (start > pos) {
                    if (!sink.extent(start - pos, 0)) {
                        return;
                    }
                    pos = start;
                }
                if (!sink.extent(end - pos, 1)) {
                    return;
                }
                pos = end;
            }
            if (pos < sizeBytes) {
                sink.extent(sizeBytes - pos, 0);
            }
        }
    }

    record Entry(String name, String description, BlockDevice device, boolean readOnly, List<DirtyBitmap> bitmaps) {
    }

    private final Map<String, Entry> exports = new ConcurrentHashMap<>();
    private final List<String> order = new ArrayList<>();
    private volatile String defaultName;
    /** Whether exports announce {@link Export#sparseReads()}. */
    volatile boolean sparseReads;
    /** The {@link Export#minimumBlockBytes()} of every export. */
    volatile int minimumBlockBytes = 1;

    /** Adds an export over a new sparse file {@code dir/name.img} of {@code sizeBytes}. */
    Entry add(Path dir, String name, long sizeBytes, boolean readOnly, DirtyBitmap... bitmaps) {
        try {
            BlockDevice device = BlockDevices.open(dir.resolve(name + ".img"), sizeBytes, false);
            return add(name, "test export " + name, device, readOnly, bitmaps);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    synchronized Entry add(String name, String description, BlockDevice device, boolean readOnly, DirtyBitmap... bitmaps) {
        Entry e = new Entry(name, description, device, readOnly, List.of(bitmaps));
        exports.put(name, e);
        order.add(name);
        if (defaultName == null) {
            defaultName = name;
        }
        return e;
    }

    synchronized void remove(String name) {
        exports.remove(name);
        order.remove(name);
    }

    @Override
    public synchronized List<ExportInfo> list() {
        return order.stream().map(n -> new ExportInfo(n, exports.get(n).description())).toList();
    }

    /** Access lists by export name; an export without one is open to every client. */
    final Map<String, AccessList> access = new ConcurrentHashMap<>();

    @Override
    public boolean allows(String name, NbdClient client) {
        AccessList a = access.get(name);
        return a == null || a.allows(client);
    }

    @Override
    public String defaultExportName() {
        return defaultName;
    }

    /** If set, {@link #open} waits for it (counting in {@link #opensAtGate}) before it answers. */
    volatile java.util.concurrent.CountDownLatch openGate;
    final java.util.concurrent.atomic.AtomicInteger opensAtGate = new java.util.concurrent.atomic.AtomicInteger();

    @Override
    public Export open(String name) {
        java.util.concurrent.CountDownLatch gate = openGate;
        if (gate != null) {
            opensAtGate.incrementAndGet();
            try {
                gate.await();
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
            }
        }
        Entry e = exports.get(name);
        if (e == null) {
            return null;
        }
        return new Export() {
            @Override
            public String name() {
                return e.name();
            }

            @Override
            public String description() {
                return e.description();
            }

            @Override
            public BlockDevice device() {
                return e.device();
            }

            @Override
            public boolean readOnly() {
                return e.readOnly();
            }

            @Override
            public List<String> metaContextNames() {
                return e.bitmaps().stream().map(DirtyBitmap::name).toList();
            }

            @Override
            public boolean sparseReads() {
                return sparseReads;
            }

            @Override
            public int minimumBlockBytes() {
                return minimumBlockBytes;
            }

            @Override
            public MetaContext resolveMetaContext(String contextName) {
                return e.bitmaps().stream().filter(b -> b.name().equals(contextName)).findFirst().orElse(null);
            }
        };
    }

    @Override
    public void close() throws IOException {
        for (Entry e : exports.values()) {
            e.device().close();
        }
    }
}
