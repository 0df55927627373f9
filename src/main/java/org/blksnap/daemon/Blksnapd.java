package org.blksnap.daemon;

import ch.qos.logback.classic.Level;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Callable;
import org.blksnap.ctrl.DeviceAdmin;
import org.blksnap.ctrl.api.InvalidValueException;
import org.blksnap.ctrl.api.Sizes;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.Persistence;
import org.blksnap.nbd.NbdServer;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * {@code blksnapd}: hosts the engine, the NBD server and the control API. With no arguments it
 * serves a 1 GiB sparse device {@code disk0} from {@code ./blksnap-data}. Flags override the config
 * file, which overrides the defaults; devices added at run time are restored from the data
 * directory's registry ({@link DeviceManager}). Exit codes: 0 clean stop; 1 could not start (a
 * device that cannot be opened, an unreadable device registry, a socket, a port); 64 bad arguments
 * or config, or a declared device that conflicts with a registered one; 75 the data directory is in
 * use by another daemon.
 */
@Command(name = "blksnapd", mixinStandardHelpOptions = true, version = "blksnapd 1.0.0",
        description = "Serve block devices with change tracking and snapshots over NBD.",
        footer = {"", "Config file keys are the long option names without '--' (data-dir, device, listen, socket,",
                "control, param, metrics, read-only-images, log-level, cbt-region, checkpoint-interval,",
                "no-persist, max-connections, control-group, allow-path); device, param and allow-path take a list",
                "(comma-separated in a properties file, an array in JSON)."})
public final class Blksnapd implements Callable<Integer> {
    /** Exit code: another daemon holds the data directory (sysexits EX_TEMPFAIL). */
    public static final int EXIT_IN_USE = 75;

    @Option(names = "--data-dir", paramLabel = "DIR", description = "data directory (default ./blksnap-data)")
    String dataDir;
    @Option(names = "--device", paramLabel = "NAME=PATH[:SIZE]",
            description = "a device to serve (repeatable); a missing file is created sparse at SIZE (K/M/G/T)")
    List<String> devices = new ArrayList<>();
    @Option(names = "--listen", paramLabel = "HOST:PORT|none", description = "NBD TCP address (default 127.0.0.1:10809)")
    String listen;
    @Option(names = "--socket", paramLabel = "PATH|none", description = "NBD Unix socket (default DATA_DIR/nbd.sock)")
    String socket;
    @Option(names = "--control", paramLabel = "PATH", description = "control API socket (default DATA_DIR/control.sock)")
    String control;
    @Option(names = "--param", paramLabel = "NAME=VALUE", description = "module parameter (repeatable)")
    List<String> params = new ArrayList<>();
    @Option(names = "--metrics", paramLabel = "HOST:PORT", description = "serve Prometheus metrics on /metrics")
    String metrics;
    @Option(names = "--config", paramLabel = "FILE", description = "properties or JSON file with the same keys")
    Path configFile;
    @Option(names = "--read-only-images", description = "export snapshot images read-only")
    Boolean readOnlyImages;
    @Option(names = "--log-level", paramLabel = "LEVEL", description = "ERROR, WARN, INFO (default), DEBUG, TRACE")
    String logLevel;
    @Option(names = "--cbt-region", paramLabel = "SIZE", description = "change tracking journal region, a power of"
            + " two from 64K to 1T (default 64M): the first write of each checkpoint epoch into a region waits for one"
            + " journal sync; bigger regions mean fewer syncs and more over-report after a crash")
    String cbtRegion;
    @Option(names = "--checkpoint-interval", paramLabel = "SECONDS", description = "how often trackers written since"
            + " their last checkpoint are checkpointed (default 60; fractions allowed)")
    String checkpointInterval;
    @Option(names = "--no-persist", description = "keep change tracking in memory only (lost at restart), as before"
            + " DATA_DIR/state existed")
    Boolean noPersist;
    @Option(names = "--max-connections", paramLabel = "N",
            description = "NBD connections served at once (default 256); further clients are refused with an error"
                    + " reply; each connection holds 328 KiB of direct memory")
    Integer maxConnections;
    @Option(names = "--control-group", paramLabel = "GROUP", description = "members of GROUP may use the control API"
            + " besides root (the socket becomes mode 0660 with that group); their paths must lie in --allow-path"
            + " directories")
    String controlGroup;
    @Option(names = "--allow-path", paramLabel = "DIR", description = "a directory in which members of the control"
            + " group may name storage files, devices and mount points (repeatable); symbolic links out of it are"
            + " refused")
    List<Path> allowPaths = new ArrayList<>();

    private PrintWriter out;
    private PrintWriter err;
    private volatile Daemon daemon;

    public static void main(String[] args) {
        Blksnapd d = new Blksnapd();
        int rc = d.execute(args, new PrintWriter(System.out, true, StandardCharsets.UTF_8),
                new PrintWriter(System.err, true, StandardCharsets.UTF_8), true);
        if (rc != 0) {
            System.exit(rc);
        }
    }

    /**
     * Parses, starts, and (when {@code block}) waits until SIGINT/SIGTERM has shut the daemon down.
     * With {@code block == false} it returns 0 right after starting (tests then call {@link #daemon()}).
     */
    public int execute(String[] args, PrintWriter out, PrintWriter err, boolean block) {
        this.out = out;
        this.err = err;
        CommandLine cl = new CommandLine(this);
        cl.setOut(out);
        cl.setErr(err);
        cl.setParameterExceptionHandler((ex, a) -> {
            err.println("blksnapd: " + ex.getMessage());
            return 64;
        });
        cl.setExecutionExceptionHandler((ex, c, parsed) -> {
            if (ex instanceof DataDirLock.HeldException) {
                err.println("blksnapd: " + ex.getMessage());
                return EXIT_IN_USE;
            }
            if (ex instanceof BlksnapException b && b.errno() == Errno.EINVAL) { // bad arguments, config, or a conflict
                err.println("blksnapd: " + b.errno() + ": " + b.getMessage());
                return 64;
            }
            if (ex instanceof BlksnapException b) { // a device that cannot be opened: ENOENT, EPERM, EIO, ...
                err.println("blksnapd: cannot start: " + b.errno() + ": " + b.getMessage());
                return 1;
            }
            if (ex instanceof InvalidValueException v) { // a malformed --device or --param
                err.println("blksnapd: " + v.getMessage());
                return 64;
            }
            err.println("blksnapd: cannot start: " + ex.getMessage());
            LoggerFactory.getLogger(Blksnapd.class).debug("start failed", ex);
            return 1;
        });
        this.block = block;
        return cl.execute(args);
    }

    private boolean block;

    /** The running daemon (after a non-blocking {@link #execute}). */
    public Daemon daemon() {
        return daemon;
    }

    @Override
    public Integer call() throws Exception {
        Map<String, List<String>> file = configFile == null ? Map.of() : readConfig(configFile);
        String level = pick(logLevel, file, "log-level", "INFO");
        setLogLevel(level);
        Path dir = Path.of(pick(dataDir, file, "data-dir", DaemonConfig.DEFAULT_DATA_DIR)).toAbsolutePath().normalize();
        Path cwd = Path.of("").toAbsolutePath();
        boolean fromFlags = !devices.isEmpty();
        List<String> deviceTexts = fromFlags ? devices : file.getOrDefault("device", List.of());
        List<DeviceSpec> specs = new ArrayList<>();
        for (String t : deviceTexts) {
            specs.add(DeviceSpec.parse(t, cwd, fromFlags ? DeviceAdmin.Origin.FLAG : DeviceAdmin.Origin.CONFIG));
        }
        if (specs.isEmpty()) {
            specs.add(new DeviceSpec("disk0", dir.resolve("disk0.img"), DaemonConfig.DEFAULT_DEVICE_BYTES,
                    DeviceAdmin.Origin.DEFAULT));
        }
        String sock = pick(socket, file, "socket", dir.resolve("nbd.sock").toString());
        String ctl = pick(control, file, "control", dir.resolve("control.sock").toString());
        List<String> allParams = new ArrayList<>(file.getOrDefault("param", List.of()));
        allParams.addAll(params);
        boolean ro = readOnlyImages != null ? readOnlyImages
                : Boolean.parseBoolean(pick(null, file, "read-only-images", "false"));
        DaemonConfig config = new DaemonConfig(dir, specs,
                DaemonConfig.parseAddress("--listen", pick(listen, file, "listen", DaemonConfig.DEFAULT_LISTEN)),
                sock.equalsIgnoreCase("none") ? null : Path.of(sock).toAbsolutePath(),
                Path.of(ctl).toAbsolutePath(), allParams,
                DaemonConfig.parseAddress("--metrics", pick(metrics, file, "metrics", null)), ro, level,
                persistence(dir, file),
                maxConnections != null ? maxConnections : parseCount("--max-connections",
                        pick(null, file, "max-connections", String.valueOf(NbdServer.Config.DEFAULT_MAX_CONNECTIONS))),
                pick(controlGroup, file, "control-group", null), allowPaths(cwd, file));
        Daemon d = Daemon.start(config);
        daemon = d;
        if (block) {
            Runtime.getRuntime().addShutdownHook(Thread.ofPlatform().name("blksnapd-shutdown").unstarted(() -> {
                SystemdNotify.stopping();
                try {
                    d.close();
                } catch (IOException e) {
                    LoggerFactory.getLogger(Blksnapd.class).error("shutdown failed", e);
                }
            }));
        }
        d.printNextSteps(out);
        if (block) {
            // Under systemd (Type=notify) the unit counts as started from here: every socket is open.
            SystemdNotify.ready("serving " + config.devices().size() + " device(s); control API at " + config.controlSocket());
            d.awaitStopped();
        }
        return 0;
    }

    /** The persistence of --cbt-region, --checkpoint-interval and --no-persist (or their config keys). */
    private Persistence persistence(Path dir, Map<String, List<String>> file) {
        boolean off = noPersist != null ? noPersist : Boolean.parseBoolean(pick(null, file, "no-persist", "false"));
        if (off) {
            return Persistence.NONE;
        }
        String region = pick(cbtRegion, file, "cbt-region", null);
        String interval = pick(checkpointInterval, file, "checkpoint-interval", null);
        long regionBytes = region == null ? Persistence.DEFAULT_REGION_BYTES : Sizes.parseBytes("--cbt-region", region);
        java.time.Duration every = Persistence.DEFAULT_CHECKPOINT_INTERVAL;
        if (interval != null) {
            double seconds;
            try {
                seconds = Double.parseDouble(interval);
            } catch (NumberFormatException e) {
                seconds = -1;
            }
            if (!(seconds >= 0.001 && seconds <= 1e6)) {
                throw new InvalidValueException("--checkpoint-interval '" + interval + "' must be a number of seconds"
                        + " from 0.001 to 1000000");
            }
            every = java.time.Duration.ofNanos((long) (seconds * 1e9));
        }
        return new Persistence(dir.resolve(DaemonConfig.STATE_DIR), regionBytes, every);
    }

    /** --allow-path flags, or else the config file's allow-path list, made absolute. */
    private List<Path> allowPaths(Path cwd, Map<String, List<String>> file) {
        List<Path> dirs = new ArrayList<>();
        if (!allowPaths.isEmpty()) {
            allowPaths.forEach(p -> dirs.add(cwd.resolve(p).normalize()));
        } else {
            file.getOrDefault("allow-path", List.of()).forEach(p -> dirs.add(cwd.resolve(p).normalize()));
        }
        return dirs;
    }

    private static int parseCount(String what, String text) {
        try {
            return Integer.parseInt(text.trim());
        } catch (NumberFormatException e) {
            throw new CommandLine.ParameterException(new CommandLine(new Blksnapd()),
                    what + " '" + text + "' must be a whole number");
        }
    }

    private static String pick(String flag, Map<String, List<String>> file, String key, String def) {
        if (flag != null) {
            return flag;
        }
        List<String> v = file.get(key);
        return v == null || v.isEmpty() ? def : v.getLast();
    }

    static void setLogLevel(String level) {
        Level l = Level.toLevel(level, null);
        if (l == null) {
            throw new CommandLine.ParameterException(new CommandLine(new Blksnapd()),
                    "--log-level '" + level + "' must be one of ERROR, WARN, INFO, DEBUG, TRACE");
        }
        if (LoggerFactory.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME) instanceof ch.qos.logback.classic.Logger root) {
            root.setLevel(l);
        }
    }

    /** Reads a properties or JSON config file into key → values. */
    static Map<String, List<String>> readConfig(Path file) throws IOException {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new CommandLine.ParameterException(new CommandLine(new Blksnapd()),
                    "--config " + file + ": cannot read: " + e.getMessage());
        }
        Map<String, List<String>> m = new LinkedHashMap<>();
        List<String> known = List.of("data-dir", "device", "listen", "socket", "control", "param", "metrics",
                "read-only-images", "log-level", "cbt-region", "checkpoint-interval", "no-persist", "max-connections",
                "control-group", "allow-path");
        if (text.stripLeading().startsWith("{")) {
            JsonNode root;
            try {
                root = JsonMapper.builder().build().readTree(text);
            } catch (RuntimeException e) {
                throw new CommandLine.ParameterException(new CommandLine(new Blksnapd()),
                        "--config " + file + ": malformed JSON: " + e.getMessage());
            }
            for (var e : root.properties()) {
                List<String> values = new ArrayList<>();
                if (e.getValue().isArray()) {
                    e.getValue().forEach(v -> values.add(v.asString()));
                } else {
                    values.add(e.getValue().asString());
                }
                m.put(e.getKey(), values);
            }
        } else {
            Properties p = new Properties();
            p.load(new java.io.StringReader(text));
            for (String k : p.stringPropertyNames()) {
                List<String> values = new ArrayList<>();
                for (String v : p.getProperty(k).split(",")) {
                    if (!v.isBlank()) {
                        values.add(v.trim());
                    }
                }
                m.put(k, values);
            }
        }
        for (String k : m.keySet()) {
            if (!known.contains(k)) {
                throw new CommandLine.ParameterException(new CommandLine(new Blksnapd()),
                        "--config " + file + ": unknown key '" + k + "'; known: " + String.join(", ", known));
            }
        }
        return m;
    }
}
