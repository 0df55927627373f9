package org.blksnap.daemon;

import com.sun.net.httpserver.HttpServer;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.MultiGauge;
import io.micrometer.core.instrument.Tags;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Status;
import org.blksnap.nbd.ExportStats;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Prometheus metrics on {@code HOST:PORT/metrics}: per-device I/O counts and bytes (counted where
 * the NBD exports meet the engine), and, sampled from the engine's status at each scrape, storage
 * capacity and use, chunks copied, snapshot states and pending events; plus events handed out.
 * Thread-safe.
 */
final class Metrics implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Metrics.class);

    private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    private final Blksnap engine;
    private final MultiGauge capacity;
    private final MultiGauge used;
    private final MultiGauge chunks;
    private final MultiGauge state;
    private final MultiGauge pending;
    private final MultiGauge deviceSize;
    private final MultiGauge snapNumber;
    private HttpServer http;

    Metrics(Blksnap engine) {
        this.engine = engine;
        capacity = MultiGauge.builder("blksnap.storage.capacity.bytes").description("difference storage appended")
                .register(registry);
        used = MultiGauge.builder("blksnap.storage.used.bytes").description("difference storage filled")
                .register(registry);
        chunks = MultiGauge.builder("blksnap.cow.chunks.copied").description("chunks copied on write")
                .register(registry);
        state = MultiGauge.builder("blksnap.snapshot.state").description("1 for the snapshot's current state")
                .register(registry);
        pending = MultiGauge.builder("blksnap.snapshot.events.pending").description("events queued")
                .register(registry);
        deviceSize = MultiGauge.builder("blksnap.device.size.bytes").register(registry);
        snapNumber = MultiGauge.builder("blksnap.tracker.snap.number").register(registry);
    }

    private volatile java.util.function.Supplier<java.util.Map<String, ExportStats>> exportStats = java.util.Map::of;
    private final java.util.Set<String> exportsRegistered = java.util.concurrent.ConcurrentHashMap.newKeySet();

    /** Where per-export I/O counters come from (the NBD server's own counters, so the data path pays nothing). */
    void exportStats(java.util.function.Supplier<java.util.Map<String, ExportStats>> source) {
        this.exportStats = source;
    }

    private void registerExportCounters() {
        for (String name : exportStats.get().keySet()) {
            if (!exportsRegistered.add(name)) {
                continue;
            }
            java.util.function.ToDoubleFunction<String> requests = n -> stat(n).requests();
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
            List<MultiGauge.Row<?>> pend = new ArrayList<>();
            for (Status.SnapshotStatus sn : s.snapshots()) {
                Tags t = Tags.of("snapshot", sn.id().toString());
                cap.add(MultiGauge.Row.of(t, sn.capacitySectors() * 512.0));
                use.add(MultiGauge.Row.of(t, sn.usedSectors() * 512.0));
                chk.add(MultiGauge.Row.of(t, sn.chunksCopied()));
                pend.add(MultiGauge.Row.of(t, sn.pendingEvents()));
                st.add(MultiGauge.Row.of(t.and("state", sn.state()), 1));
            }
            capacity.register(cap, true);
            used.register(use, true);
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
        registry.close();
    }
}
