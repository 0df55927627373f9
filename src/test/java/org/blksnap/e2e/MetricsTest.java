package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.blksnap.daemon.Daemon;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * {@code /metrics} of a daemon under real NBD client I/O (qemu-io writing and flushing the original
 * while a snapshot is taken, so writes copy on write; nbdcopy and nbdinfo reading the image): the
 * latency histograms per export and operation, the copy-on-write histogram, storage fill and
 * snapshot age, and the JVM and process gauges are there; and every metric the Grafana dashboard
 * ({@code dist/grafana/blksnap.json}) queries is one the daemon exports.
 */
@Tag("system")
class MetricsTest {
    private static final Path DASHBOARD = Path.of("dist/grafana/blksnap.json");

    @TempDir
    Path dir;

    @Test
    void aScrapeUnderLoadHasTheLatencyHistogramsTheJvmGaugesAndEveryNameTheDashboardUses() throws Exception {
        ExternalTool.require("qemu-io", "nbdcopy", "nbdinfo");
        try (DaemonHarness h = DaemonHarness.start(dir.resolve("data"), List.of("m0=64M"),
                List.of("diff_storage_minimum=65536"), new InetSocketAddress("127.0.0.1", 0))) {
            Daemon d = h.daemon();
            String id = h.ok("snapshot", "create", "--device", "m0");
            h.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("ds").toString(), "--size", "64M");
            assertThat(h.ok("snapshot", "wait-event", "--id", id, "--timeout", "100")).startsWith("low_free_space");
            h.ok("snapshot", "take", "--id", id);
            String original = d.uri("m0");
            String image = d.uri("blksnap-image0");

            // Load: clients write (each 1 MiB write to a new place copies chunks), flush, trim and
            // zero the original, and read the image, while /metrics is scraped.
            AtomicBoolean stop = new AtomicBoolean();
            List<ExternalTool.Result> failures = java.util.Collections.synchronizedList(new ArrayList<>());
            Thread writer = Thread.ofPlatform().start(() -> {
                for (int i = 0; !stop.get() && i < 48; i++) {
                    long off = (long) (i % 48) << 20;
                    ExternalTool.Result r = ExternalTool.run(Duration.ofSeconds(60), "qemu-io", "-f", "raw", "-d", "unmap",
                            "-c", "write -P 0x5a " + off + " 1M", "-c", "read " + off + " 64k", "-c", "flush",
                            "-c", "write -z " + (off + (512 << 10)) + " 64k", "-c", "discard " + (off + (768 << 10)) + " 64k",
                            original);
                    if (r.exitCode() != 0) {
                        failures.add(r);
                    }
                }
            });
            Thread reader = Thread.ofPlatform().start(() -> {
                while (!stop.get()) {
                    ExternalTool.Result r = ExternalTool.run(Duration.ofSeconds(60), "nbdcopy", image, "null:");
                    ExternalTool.Result m = ExternalTool.run(Duration.ofSeconds(60), "nbdinfo", "--map", image);
                    if (r.exitCode() != 0) {
                        failures.add(r);
                    }
                    if (m.exitCode() != 0) {
                        failures.add(m);
                    }
                }
            });
            String during;
            try {
                List<String> scrapes = new ArrayList<>();
                for (int i = 0; i < 5; i++) {
                    Thread.sleep(300);
                    scrapes.add(scrape(d));
                }
                during = scrapes.getLast();
            } finally {
                writer.join(Duration.ofMinutes(3));
                stop.set(true);
                writer.join(Duration.ofMinutes(1));
                reader.join(Duration.ofMinutes(1));
            }
            assertThat(failures).as("client failures").isEmpty();
            assertThat(during).contains("blksnap_nbd_request_seconds_bucket{");
            // the NBD server's own memory: its buffers while clients are connected
            assertThat(count(during, "blksnap_nbd_native_memory_bytes", "")).isPositive();
            System.gc(); // so that the GC meters exist (they appear with the first collection)
            String body = awaitScrape(d, "jvm_gc_pause_seconds_count");

            for (String op : List.of("write", "read", "flush", "write_zeroes", "trim")) {
                assertThat(count(body, "blksnap_nbd_request_seconds_count", "device=\"m0\",op=\"" + op + "\""))
                        .as("requests of %s on m0", op).isPositive();
                assertThat(body).contains("blksnap_nbd_request_seconds_bucket{device=\"m0\",op=\"" + op + "\",le=\"5.0E-5\"}")
                        .contains("blksnap_nbd_request_seconds_bucket{device=\"m0\",op=\"" + op + "\",le=\"+Inf\"}");
            }
            assertThat(count(body, "blksnap_nbd_request_seconds_count", "device=\"blksnap-image0\",op=\"read\""))
                    .isPositive();
            assertThat(count(body, "blksnap_nbd_request_seconds_count", "device=\"blksnap-image0\",op=\"block_status\""))
                    .isPositive();
            // 48 MiB of the original written after take: every 64 KiB chunk of it copied once
            double copies = count(body, "blksnap_cow_seconds_count", "device=\"m0\"");
            assertThat(copies).isPositive();
            assertThat(count(body, "blksnap_cow_bytes_total", "device=\"m0\"")).isPositive();
            assertThat(body).contains("blksnap_cow_seconds_bucket{device=\"m0\",le=\"0.001\"}");
            assertThat(count(body, "blksnap_storage_used_bytes", "snapshot=\"" + id + "\"")).isPositive();
            assertThat(count(body, "blksnap_storage_capacity_bytes", "snapshot=\"" + id + "\""))
                    .isEqualTo(64 << 20);
            assertThat(count(body, "blksnap_snapshot_age_seconds", "snapshot=\"" + id + "\"")).isPositive();
            // nbdcopy's 256 KiB READs of the image (a file device's) are large reads, whichever path they took
            assertThat(count(body, "blksnap_nbd_large_reads_total", "path=\"sendfile\"")
                    + count(body, "blksnap_nbd_large_reads_total", "path=\"buffer\"")).isPositive();
            // the JVM and the process
            assertThat(count(body, "jvm_memory_used_bytes", "area=\"heap\"")).isPositive();
            assertThat(count(body, "jvm_buffer_memory_used_bytes", "id=\"direct\"")).isPositive();
            assertThat(count(body, "jvm_threads_live_threads", "")).isPositive();
            assertThat(count(body, "process_resident_memory_bytes", "")).isGreaterThan(16 << 20);
            assertThat(body).contains("jvm_gc_pause_seconds_count{", "process_cpu_usage", "process_files_open_files");

            Set<String> exported = metricNames(body);
            Set<String> used = dashboardMetrics();
            assertThat(used).as("the dashboard's metrics").contains("blksnap_nbd_request_seconds_bucket",
                    "blksnap_cow_seconds_bucket", "blksnap_storage_used_bytes", "blksnap_snapshot_age_seconds",
                    "jvm_memory_used_bytes", "process_resident_memory_bytes", "jvm_gc_pause_seconds_sum");
            assertThat(exported).as("metrics the daemon exports").containsAll(used);
            h.ok("snapshot", "destroy", "--id", id);
        }
    }

    private static String scrape(Daemon d) throws Exception {
        InetSocketAddress a = d.metricsAddress();
        HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                URI.create("http://127.0.0.1:" + a.getPort() + "/metrics")).timeout(Duration.ofSeconds(10)).build(),
                HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        assertThat(r.statusCode()).isEqualTo(200);
        return r.body();
    }

    private static String awaitScrape(Daemon d, String name) throws Exception {
        String body = scrape(d);
        for (int i = 0; i < 50 && !body.contains(name); i++) {
            Thread.sleep(100);
            body = scrape(d);
        }
        return body;
    }

    /**
     * The value of the sample {@code name{labels...}} whose labels start with {@code labels}. Fails if
     * the scrape has no such sample: returning NaN let {@code isPositive()} pass (AssertJ orders NaN
     * above every number, as {@link Double#compare} does).
     */
    private static double count(String body, String name, String labels) {
        for (String line : body.lines().toList()) {
            if (line.startsWith(name + "{" + labels) || labels.isEmpty() && (line.startsWith(name + " ")
                    || line.startsWith(name + "{"))) {
                return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
            }
        }
        throw new AssertionError("no sample " + name + (labels.isEmpty() ? "" : "{" + labels + "...}")
                + " in the scrape");
    }

    /** The names of the samples in a Prometheus text exposition. */
    private static Set<String> metricNames(String body) {
        Set<String> names = new TreeSet<>();
        for (String line : body.lines().toList()) {
            if (!line.isEmpty() && !line.startsWith("#")) {
                names.add(line.split("[{ ]", 2)[0]);
            }
        }
        return names;
    }

    /** PromQL words that are not metric names. */
    private static final Set<String> PROMQL = Set.of("sum", "avg", "min", "max", "count", "rate", "irate", "increase",
            "histogram_quantile", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "label_values", "clamp_min", "clamp_max", "time", "offset", "bool", "abs", "topk", "bottomk", "delta",
            "deriv", "avg_over_time", "max_over_time", "min_over_time", "inf", "nan");

    /**
     * Every metric name in the dashboard's queries and variables: the identifiers of each {@code expr}
     * once label matchers, grouping clauses, ranges, strings, variables and numbers are taken out.
     */
    private static Set<String> dashboardMetrics() throws Exception {
        JsonNode root = JsonMapper.builder().build().readTree(Files.readString(DASHBOARD));
        List<String> exprs = new ArrayList<>();
        collect(root, exprs);
        assertThat(exprs).as("queries of %s", DASHBOARD).hasSizeGreaterThan(20);
        Set<String> names = new TreeSet<>();
        Pattern ident = Pattern.compile("[A-Za-z_:][A-Za-z0-9_:]*");
        for (String e : exprs) {
            String s = e.replaceAll("label_values\\((.*),\\s*\\w+\\)", "$1")
                    .replaceAll("\"[^\"]*\"", "\"\"")
                    .replaceAll("\\{[^}]*}", " ")
                    .replaceAll("\\[[^]]*]", " ")
                    .replaceAll("\\b(by|without|on|ignoring)\\s*\\([^)]*\\)", " ")
                    .replaceAll("\\$\\w+", " ");
            Matcher m = ident.matcher(s);
            while (m.find()) {
                String w = m.group();
                boolean number = m.start() > 0 && Character.isDigit(s.charAt(m.start() - 1));
                if (!PROMQL.contains(w) && !number) {
                    names.add(w);
                }
            }
        }
        return names;
    }

    /** The {@code expr} of every target and the query of every variable, anywhere in the tree. */
    private static void collect(JsonNode n, List<String> out) {
        if (n.isObject()) {
            for (var e : n.properties()) {
                if (e.getKey().equals("expr") && e.getValue().isString()) {
                    out.add(e.getValue().asString());
                } else if (e.getKey().equals("definition") && e.getValue().isString()) {
                    out.add(e.getValue().asString());
                } else {
                    collect(e.getValue(), out);
                }
            }
        } else if (n.isArray()) {
            for (JsonNode c : n) {
                collect(c, out);
            }
        }
    }
}
