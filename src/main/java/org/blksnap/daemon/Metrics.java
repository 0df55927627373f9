package org.blksnap.daemon;

import com.sun.net.httpserver.HttpServer;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MultiGauge;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.function.Supplier;
import java.util.function.ToDoubleFunction;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.EngineListener;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Status;
import org.blksnap.nbd.ExportStats;
import org.blksnap.nbd.NbdServer;
import org.blksnap.nbd.RequestObserver;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Prometheus metrics on {@code HOST:PORT/metrics} (the names: docs/metrics.md; a dashboard on them:
 * dist/grafana/blksnap.json):
 *
 * <ul>
 *   <li>per export (label {@code device}, which is the export's name: a device or an image):
 *       request latency histograms by operation ({@code blksnap_nbd_request_seconds},
 *       fed by the NBD server's {@link RequestObserver}), and I/O counts and bytes (the server's own
 *       counters, read at each scrape);</li>
 *   <li>per device: copy-on-write latency histograms and bytes ({@code blksnap_cow_seconds}, fed by
 *       {@link EngineListener#chunkCopied});</li>
 *   <li>sampled from the engine's status at each scrape: storage capacity, use and requests, chunks
 *       copied, snapshot states, ages and pending events, device sizes and snapshot numbers;</li>
 *   <li>the NBD server's native memory and its large reads by path (sendfile or a buffer);</li>
 *   <li>events handed out; the JVM (heap, direct and mapped buffers, GC, threads, classes) and the
 *       process (CPU, open files, uptime, resident memory from {@code /proc/self/status}).</li>
 * </ul>
 *
 * The histograms have fixed buckets ({@link #LATENCY_BUCKETS}): recording one value costs a few
 * atomic additions on the request's thread and nothing is allocated. Thread-safe.
 */
final class Metrics implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Metrics.class);

    /**
     * Upper bounds of the latency histograms' buckets (plus +Inf): from a page-cache hit to a stalled
     * disk, few enough that each export and operation costs 15 series.
     */
    static final Duration[] LATENCY_BUCKETS = {Duration.ofNanos(50_000), Duration.ofNanos(100_000),
            Duration.ofNanos(250_000), Duration.ofNanos(500_000), Duration.ofMillis(1), Duration.ofNanos(2_500_000),
            Duration.ofMillis(5), Duration.ofMillis(10), Duration.ofMillis(25), Duration.ofMillis(100),
            Duration.ofMillis(250), Duration.ofSeconds(1), Duration.ofSeconds(5)};

    private static final Path PROC_STATUS = Path.of("/proc/self/status");

    private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    private final Blksnap engine;
    private final MultiGauge capacity;
    private final MultiGauge used;
    private final MultiGauge requested;
    private final MultiGauge chunks;
    private final MultiGauge state;
    private final MultiGauge pending;
    private final MultiGauge age;
    private final MultiGauge deviceSize;
    private final MultiGauge snapNumber;
    private JvmGcMetrics gc;
    private final Map<String, CowMeters> cow = new ConcurrentHashMap<>();
    private volatile Supplier<Map<String, ExportStats>> exportStats = Map::of;
    private final Set<String> exportsRegistered = ConcurrentHashMap.newKeySet();
    private HttpServer http;

    Metrics(Blksnap engine) {
        this.engine = engine;
        capacity = MultiGauge.builder("blksnap.storage.capacity.bytes").description("difference storage appended")
                .register(registry);
        used = MultiGauge.builder("blksnap.storage.used.bytes").description("difference storage filled")
                .register(registry);
        requested = MultiGauge.builder("blksnap.storage.requested.bytes")
                .description("difference storage asked for by low_free_space events so far").register(registry);
        chunks = MultiGauge.builder("blksnap.cow.chunks.copied").description("chunks copied on write")
                .register(registry);
        state = MultiGauge.builder("blksnap.snapshot.state").description("1 for the snapshot's current state")
                .register(registry);
        pending = MultiGauge.builder("blksnap.snapshot.events.pending").description("events queued")
                .register(registry);
        age = MultiGauge.builder("blksnap.snapshot.age.seconds")
                .description("seconds since the snapshot was taken (since it was created, before take)")
                .register(registry);
        deviceSize = MultiGauge.builder("blksnap.device.size.bytes").register(registry);
        snapNumber = MultiGauge.builder("blksnap.tracker.snap.number").register(registry);
    }

    /**
     * The JVM and process meters: bound when metrics are served, so that a daemon without
     * {@code --metrics} does not load the management beans at start.
     */
    private void bindJvmAndProcess() {
        new JvmMemoryMetrics().bindTo(registry);
        gc = new JvmGcMetrics();
        gc.bindTo(registry);
        new JvmThreadMetrics().bindTo(registry);
        new ClassLoaderMetrics().bindTo(registry);
        new ProcessorMetrics().bindTo(registry);
        new FileDescriptorMetrics().bindTo(registry);
        new UptimeMetrics().bindTo(registry);
        if (Files.isReadable(PROC_STATUS)) {
            Gauge.builder("process.resident.memory", Metrics::residentBytes).baseUnit("bytes")
                    .description("resident set size of the daemon (VmRSS of /proc/self/status)").register(registry);
        }
    }

    /** The latency recorder of one export's requests, for the NBD server ({@link org.blksnap.nbd.NbdServer#observeRequests}). */
    RequestObserver requestObserver(String export) {
        return new ExportTimers(export);
    }

    /** What the engine tells of copy-on-write, recorded per device. */
    EngineListener copyListener() {
        return new EngineListener() {
            @Override
            public void chunkCopied(String device, int bytes, long nanos) {
                CowMeters m = cow.computeIfAbsent(device, CowMeters::new);
                m.latency.record(nanos, TimeUnit.NANOSECONDS);
                m.bytes.increment(bytes);
            }
        };
    }

    private Timer latencyTimer(String name, String description, Tags tags) {
        return Timer.builder(name).description(description).tags(tags).serviceLevelObjectives(LATENCY_BUCKETS)
                .register(registry);
    }

    /** One export's timers, one per operation, each registered the first time it is used. */
    private final class ExportTimers implements RequestObserver {
        private final String export;
        private final AtomicReferenceArray<Timer> byCommand = new AtomicReferenceArray<>(Command.values().length);

        ExportTimers(String export) {
            this.export = export;
        }

        @Override
        public void requestDone(Command command, long nanos) {
            Timer t = byCommand.get(command.ordinal());
            if (t == null) {
                // Registering twice yields the same meter, so a race here is harmless.
                t = latencyTimer("blksnap.nbd.request", "time from a request's dispatch to its reply being written",
                        Tags.of("device", export, "op", command.name().toLowerCase(Locale.ROOT)));
                byCommand.set(command.ordinal(), t);
            }
            t.record(nanos, TimeUnit.NANOSECONDS);
        }
    }

    /** One device's copy-on-write meters. */
    private final class CowMeters {
        final Timer latency;
        final Counter bytes;

        CowMeters(String device) {
            latency = latencyTimer("blksnap.cow", "time a write waited for one chunk's copy-on-write",
                    Tags.of("device", device));
            bytes = Counter.builder("blksnap.cow.bytes").baseUnit("bytes").description("bytes copied on write")
                    .tag("device", device).register(registry);
        }
    }

    /** VmRSS of {@code /proc/self/status}, in bytes; NaN if it cannot be read. */
    private static double residentBytes() {
        try {
            for (String line : Files.readAllLines(PROC_STATUS, StandardCharsets.US_ASCII)) {
                if (line.startsWith("VmRSS:")) {
                    String[] f = line.substring("VmRSS:".length()).trim().split("\\s+");
                    return Long.parseLong(f[0]) * 1024.0; // the kernel writes kB
                }
            }
        } catch (IOException | RuntimeException e) {
            LOG.debug("reading {} failed: {}", PROC_STATUS, e.toString());
        }
        return Double.NaN;
    }

    /**
     * The NBD server's own meters, read at each scrape: its native memory (connection and payload
     * buffers, outside the JVM's heap and direct limits) and how many large reads took each path.
     */
    void nbdServer(NbdServer server) {
        Gauge.builder("blksnap.nbd.native.memory", server, NbdServer::nativeMemoryBytes).baseUnit("bytes")
                .description("native memory of the NBD server: connection buffers and payload buffers in use or kept")
                .register(registry);
        String what = "READs of at least 64 KiB of file-backed exports that could leave either way (structured,"
                + " no DF, no TLS), by how they left the server";
        FunctionCounter.builder("blksnap.nbd.large.reads", server, NbdServer::largeReadsBySendfile)
                .tag("path", "sendfile").description(what).register(registry);
        FunctionCounter.builder("blksnap.nbd.large.reads", server, NbdServer::largeReadsThroughBuffer)
                .tag("path", "buffer").description(what).register(registry);
    }

    /** Where per-export I/O counters come from (the NBD server's own counters, so the data path pays nothing). */
    void exportStats(Supplier<Map<String, ExportStats>> source) {
        this.exportStats = source;
    }

    private void registerExportCounters() {
        for (String name : exportStats.get().keySet()) {
            if (!exportsRegistered.add(name)) {
                continue;
            }
            ToDoubleFunction<String> requests = n -> stat(n).requests();
            FunctionCounter.builder("blksnap.device.requests", name, requests).tag("device", name).register(registry);
            FunctionCounter.builder("blksnap.device.errors", name, n -> stat(n).errors()).tag("device", name)
                    .register(registry);
            FunctionCounter.builder("blksnap.device.read.bytes", name, n -> stat(n).bytesRead()).tag("device", name)
                    .register(registry);
            FunctionCounter.builder("blksnap.device.written.bytes", name, n -> stat(n).bytesWritten())
                    .tag("device", name).register(registry);
            FunctionCounter.builder("blksnap.device.connections", name, n -> stat(n).connections())
                    .tag("device", name).register(registry);
        }
    }

    private ExportStats stat(String name) {
        ExportStats s = exportStats.get().get(name);
        return s == null ? new ExportStats(0, 0, 0, 0, 0, 0) : s;
    }

    /** Counts an event handed to a client. */
    void event(SnapshotEvent ev) {
        Counter.builder("blksnap.events").tag("name", ev.name()).register(registry).increment();
    }

    /** Refreshes the sampled gauges and returns the text exposition. */
    String scrape() {
        try {
            registerExportCounters();
            Status s = engine.status();
            List<MultiGauge.Row<?>> cap = new ArrayList<>();
            List<MultiGauge.Row<?>> use = new ArrayList<>();
            List<MultiGauge.Row<?>> chk = new ArrayList<>();
            List<MultiGauge.Row<?>> st = new ArrayList<>();
            List<MultiGauge.Row<?>> req = new ArrayList<>();
            List<MultiGauge.Row<?>> pend = new ArrayList<>();
            List<MultiGauge.Row<?>> ages = new ArrayList<>();
            long now = System.currentTimeMillis();
            for (Status.SnapshotStatus sn : s.snapshots()) {
                Tags t = Tags.of("snapshot", sn.id().toString());
                cap.add(MultiGauge.Row.of(t, sn.capacitySectors() * 512.0));
                use.add(MultiGauge.Row.of(t, sn.usedSectors() * 512.0));
                req.add(MultiGauge.Row.of(t, sn.requestedSectors() * 512.0));
                long since = sn.takenAtMillis() != 0 ? sn.takenAtMillis() : sn.createdAtMillis();
                ages.add(MultiGauge.Row.of(t, Math.max(0, now - since) / 1000.0));
                chk.add(MultiGauge.Row.of(t, sn.chunksCopied()));
                pend.add(MultiGauge.Row.of(t, sn.pendingEvents()));
                st.add(MultiGauge.Row.of(t.and("state", sn.state()), 1));
            }
            capacity.register(cap, true);
            used.register(use, true);
            requested.register(req, true);
            age.register(ages, true);
            chunks.register(chk, true);
            state.register(st, true);
            pending.register(pend, true);
            List<MultiGauge.Row<?>> sizes = new ArrayList<>();
            List<MultiGauge.Row<?>> numbers = new ArrayList<>();
            for (Status.DeviceStatus d : s.devices()) {
                sizes.add(MultiGauge.Row.of(Tags.of("device", d.name()), d.sizeBytes()));
                if (d.tracker() != null) {
                    numbers.add(MultiGauge.Row.of(Tags.of("device", d.name()), d.tracker().snapNumber()));
                }
            }
            deviceSize.register(sizes, true);
            snapNumber.register(numbers, true);
        } catch (RuntimeException e) {
            LOG.warn("sampling the engine status for metrics failed: {}", e.toString());
        }
        return registry.scrape();
    }

    /** Serves /metrics on the address; returns the bound address (port 0 picks one). */
    InetSocketAddress serve(InetSocketAddress address) throws IOException {
        bindJvmAndProcess();
        http = HttpServer.create(address, 16);
        http.setExecutor(Executors.newVirtualThreadPerTaskExecutor());
        http.createContext("/metrics", ex -> {
            byte[] body = scrape().getBytes(StandardCharsets.UTF_8);
            ex.getResponseHeaders().add("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
            ex.sendResponseHeaders(200, body.length);
            try (OutputStream o = ex.getResponseBody()) {
                o.write(body);
            }
        });
        http.start();
        LOG.info("metrics on http://{}:{}/metrics", http.getAddress().getHostString(), http.getAddress().getPort());
        return http.getAddress();
    }

    @Override
    public void close() {
        if (http != null) {
            http.stop(0);
        }
        if (gc != null) {
            gc.close();
        }
        registry.close();
    }
}
