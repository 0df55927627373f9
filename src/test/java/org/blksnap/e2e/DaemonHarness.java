package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.blksnap.cli.CliRun;
import org.blksnap.daemon.Daemon;
import org.blksnap.daemon.DaemonConfig;
import org.blksnap.daemon.DeviceSpec;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * An in-process blksnapd on a temporary data directory, NBD on a Unix socket only (no TCP port to
 * collide with), driven through the blksnap tool's in-process entry point exactly as a user would
 * type it. Close it in a finally/AfterEach: it destroys snapshots and closes everything.
 */
public final class DaemonHarness implements AutoCloseable {
    private final Daemon daemon;
    private final Path dataDir;

    private DaemonHarness(Daemon daemon, Path dataDir) {
        this.daemon = daemon;
        this.dataDir = dataDir;
    }

    /**
     * @param devices NAME=SIZE pairs, created as sparse files in the data directory (NAME alone: an existing file at its own size)
     * @param params  module parameters NAME=VALUE
     */
    public static DaemonHarness start(Path dataDir, List<String> devices, List<String> params) throws Exception {
        return start(dataDir, devices, params, null);
    }

    /** As {@link #start(Path, List, List)}, serving /metrics on {@code metrics} (port 0 picks one) unless null. */
    public static DaemonHarness start(Path dataDir, List<String> devices, List<String> params,
                                      java.net.InetSocketAddress metrics) throws Exception {
        List<DeviceSpec> specs = new ArrayList<>();
        for (String d : devices) {
            String[] nv = d.split("=", 2);
            // "NAME=SIZE", or "NAME" alone for an existing file served at its own size
            specs.add(DeviceSpec.parse(nv[0] + "=" + dataDir.resolve(nv[0] + ".img") + (nv.length > 1 ? ":" + nv[1] : ""),
                    dataDir));
        }
        DaemonConfig config = new DaemonConfig(dataDir, specs, null, dataDir.resolve("nbd.sock"),
                dataDir.resolve("control.sock"), params, metrics, false, "INFO");
        return new DaemonHarness(Daemon.start(config), dataDir);
    }

    public Daemon daemon() {
        return daemon;
    }

    public Path dataDir() {
        return dataDir;
    }

    public Path control() {
        return daemon.config().controlSocket();
    }

    /** The NBD URI of a device or image export. */
    public String uri(String export) {
        return daemon.uri(export);
    }

    /** Runs the tool. */
    public CliRun cli(String... args) {
        return CliRun.run(control(), args);
    }

    /** Runs the tool, asserts exit 0 and returns its output trimmed. */
    public String ok(String... args) {
        CliRun r = cli(args);
        assertThat(r.exitCode()).as("blksnap %s\n%s", String.join(" ", args), r).isZero();
        return r.line();
    }

    /** The first tracker of {@code tracker collect --json} (its CBT info). */
    public JsonNode firstTracker() {
        return JsonMapper.builder().build().readTree(ok("--json", "tracker", "collect")).path("trackers").get(0);
    }

    /** The CBT read map of {@code device}, written by {@code tracker read-cbt-map} to {@code file} and read back. */
    public byte[] cbtMap(String device, Path file) throws java.io.IOException {
        ok("tracker", "read-cbt-map", "--device", device, "--file", file.toString());
        return java.nio.file.Files.readAllBytes(file);
    }

    /** Runs the tool and asserts its exit code and the error name on stderr. */
    public CliRun fails(int exitCode, String errnoName, String... args) {
        CliRun r = cli(args);
        assertThat(r.exitCode()).as("blksnap %s\n%s", String.join(" ", args), r).isEqualTo(exitCode);
        assertThat(r.err()).as(r.toString()).contains(errnoName + " (" + exitCode + ")");
        return r;
    }

    @Override
    public void close() throws java.io.IOException {
        daemon.close();
    }
}
