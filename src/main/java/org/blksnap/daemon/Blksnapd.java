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
import org.blksnap.ctrl.ControlServer;
import org.blksnap.ctrl.DeviceAdmin;
import org.blksnap.ctrl.api.InvalidValueException;
import org.blksnap.ctrl.api.Sizes;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.Persistence;
import org.blksnap.nbd.NbdServer;
import org.blksnap.nbd.NbdTls;
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
                "no-persist, max-connections, max-connections-per-export, max-bytes-in-flight, max-control-connections,",
                "max-bytes-in-flight-per-connection, handshake-timeout, request-timeout, reply-timeout, tls, tls-cert,",
                "tls-key, tls-ca, tls-verify-peer, tls-psk, allow, read-only, control-group, allow-path); device, param,",
                "allow,",
                "read-only and allow-path take a list (comma-separated in a properties file, where a certificate",
                "subject separates its parts with ';'; an array in JSON)."})
public final class Blksnapd implements Callable<Integer> {
    /** Exit code: another daemon holds the data directory (sysexits EX_TEMPFAIL). */
    public static final int EXIT_IN_USE = 75;

    @Option(names = "--data-dir", paramLabel = "DIR", description = "data directory (default ./blksnap-data)")
    String dataDir;
    @Option(names = "--device", paramLabel = "NAME=PATH[:SIZE][:ro]",
            description = "a device to serve (repeatable); a missing file is created sparse at SIZE (K/M/G/T);"
                    + " :ro serves it read-only over NBD")
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
                    + " reply; each connection holds 328 KiB of native memory")
    Integer maxConnections;
    @Option(names = "--max-control-connections", paramLabel = "N",
            description = "control API connections served at once (default " + ControlServer.DEFAULT_MAX_CONNECTIONS
                    + "); requests on further ones are answered EAGAIN (try again later)")
    Integer maxControlConnections;
    @Option(names = "--tls", paramLabel = "off|on|require", description = "TLS on NBD (NBD_OPT_STARTTLS): off (default),"
            + " on (plain and TLS clients), require (every option but STARTTLS is refused until TLS)")
    String tls;
    @Option(names = "--tls-cert", paramLabel = "FILE", description = "server certificate (PEM; a chain may follow)")
    Path tlsCert;
    @Option(names = "--tls-key", paramLabel = "FILE", description = "private key of the certificate (PEM: PKCS#8,"
            + " RSA or EC; unencrypted)")
    Path tlsKey;
    @Option(names = "--tls-ca", paramLabel = "FILE", description = "CA certificate(s) that sign client certificates (PEM)")
    Path tlsCa;
    @Option(names = "--tls-verify-peer", description = "require a client certificate signed by --tls-ca")
    Boolean tlsVerifyPeer;
    @Option(names = "--tls-psk", paramLabel = "FILE", description = "TLS with pre-shared keys instead of certificates:"
            + " a key file of IDENTITY:HEXKEY lines, as gnutls' psktool writes it (libnbd tls-psk-file, qemu"
            + " tls-creds-psk); not with --tls-cert/--tls-key")
    Path tlsPsk;
    @Option(names = "--allow", paramLabel = "EXPORT=RULE", description = "who may see and open EXPORT (repeatable; * for"
            + " every export without rules; an image uses its device's): subject:DN (a verified client certificate),"
            + " psk:IDENTITY (a client holding that identity's key, --tls-psk), [addr:]ADDRESS[/PREFIX] (a TCP client), user:NAME or group:NAME (a Unix socket client); others get"
            + " 'no export named ...'")
    List<String> allow = new ArrayList<>();
    @Option(names = "--read-only", paramLabel = "NAME", description = "serve the device or image NAME read-only"
            + " (repeatable)")
    List<String> readOnly = new ArrayList<>();
    @Option(names = "--max-connections-per-export", paramLabel = "N",
            description = "NBD connections in transmission on one export at once (default: --max-connections);"
                    + " a GO beyond it is refused with an error reply")
    Integer maxConnectionsPerExport;
    @Option(names = "--max-bytes-in-flight", paramLabel = "SIZE",
            description = "NBD request payload bytes in flight over all connections (default 256M, at least 32M);"
                    + " beyond it connections stop reading requests until replies drain")
    String maxBytesInFlight;
    @Option(names = "--max-bytes-in-flight-per-connection", paramLabel = "SIZE",
            description = "the same for one connection (default 64M, at least 32M)")
    String maxBytesInFlightPerConnection;
    @Option(names = "--large-reads", paramLabel = "auto|sendfile|copy",
            description = "how NBD READs of 64 KiB or more of file devices leave: auto (default: through a buffer for"
                    + " a client on this host while few connections read, else by sendfile), sendfile, copy")
    String largeReads;
    @Option(names = "--handshake-timeout", paramLabel = "SECONDS",
            description = "an NBD client that has not finished its handshake after this long is dropped"
                    + " (default 30; 0: never)")
    String handshakeTimeout;
    @Option(names = "--request-timeout", paramLabel = "SECONDS",
            description = "an NBD client that takes longer than this to send the rest of a request (header and"
                    + " payload) once it has started is dropped (default 30; 0: never); idle time between requests"
                    + " is not limited")
    String requestTimeout;
    @Option(names = "--reply-timeout", paramLabel = "SECONDS",
            description = "an NBD client that takes longer than this to read one reply is dropped (default 60;"
                    + " 0: never)")
    String replyTimeout;
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
                persistence(dir, file), nbdConfig(file), security(file),
                pick(controlGroup, file, "control-group", null), allowPaths(cwd, file), maxControlConnections(file));
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

    /** TLS, allow-lists and read-only exports from the flags and the config file (flags win, lists from both). */
    private NbdSecurity security(Map<String, List<String>> file) {
        NbdTls.Mode mode;
        try {
            mode = NbdTls.Mode.parse(pick(tls, file, "tls", "off"));
        } catch (IllegalArgumentException e) {
            throw new InvalidValueException(e.getMessage());
        }
        String cert = pick(tlsCert == null ? null : tlsCert.toString(), file, "tls-cert", null);
        String key = pick(tlsKey == null ? null : tlsKey.toString(), file, "tls-key", null);
        String ca = pick(tlsCa == null ? null : tlsCa.toString(), file, "tls-ca", null);
        String psk = pick(tlsPsk == null ? null : tlsPsk.toString(), file, "tls-psk", null);
        boolean verify = tlsVerifyPeer != null ? tlsVerifyPeer
                : Boolean.parseBoolean(pick(null, file, "tls-verify-peer", "false"));
        List<String> allowed = new ArrayList<>(file.getOrDefault("allow", List.of()));
        allowed.addAll(allow);
        List<String> ro = new ArrayList<>(file.getOrDefault("read-only", List.of()));
        ro.addAll(readOnly);
        return new NbdSecurity(mode, absolute(cert), absolute(key), absolute(ca), verify, absolute(psk),
                NbdSecurity.parseAllow(allowed), NbdSecurity.parseReadOnly(ro));
    }

    private static Path absolute(String path) {
        return path == null ? null : Path.of(path).toAbsolutePath().normalize();
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

    /** --max-control-connections, or the config file's, or the default; >= 1. */
    private int maxControlConnections(Map<String, List<String>> file) {
        int n = maxControlConnections != null ? maxControlConnections : parseCount("--max-control-connections",
                pick(null, file, "max-control-connections", String.valueOf(ControlServer.DEFAULT_MAX_CONNECTIONS)));
        if (n < 1) {
            throw new BlksnapException(Errno.EINVAL, "--max-control-connections (" + n + ") must be >= 1");
        }
        return n;
    }

    /** The NBD server's limits and timeouts from the flags, the config file and the defaults. */
    private NbdServer.Config nbdConfig(Map<String, List<String>> file) {
        NbdServer.Config d = NbdServer.Config.defaults();
        int connections = maxConnections != null ? maxConnections : parseCount("--max-connections",
                pick(null, file, "max-connections", String.valueOf(d.maxConnections())));
        if (connections < 1) {
            throw new BlksnapException(Errno.EINVAL, "--max-connections (" + connections + ") must be >= 1");
        }
        int perExport = maxConnectionsPerExport != null ? maxConnectionsPerExport
                : parseCount("--max-connections-per-export",
                        pick(null, file, "max-connections-per-export", String.valueOf(connections)));
        if (perExport < 1) {
            throw new BlksnapException(Errno.EINVAL, "--max-connections-per-export (" + perExport + ") must be >= 1");
        }
        int server = inFlightBytes("--max-bytes-in-flight", pick(maxBytesInFlight, file, "max-bytes-in-flight", null),
                d.maxServerBytesInFlight());
        int perConnection = inFlightBytes("--max-bytes-in-flight-per-connection",
                pick(maxBytesInFlightPerConnection, file, "max-bytes-in-flight-per-connection", null),
                d.maxBytesInFlight());
        NbdServer.LargeReads reads;
        try {
            reads = NbdServer.LargeReads.parse(pick(largeReads, file, "large-reads", "auto"));
        } catch (IllegalArgumentException e) {
            throw new InvalidValueException(e.getMessage());
        }
        return d.withMaxConnections(connections).withMaxConnectionsPerExport(Math.min(perExport, connections))
                .withMaxBytesInFlight(perConnection, server).withLargeReads(reads)
                .withTimeouts(seconds("--handshake-timeout", pick(handshakeTimeout, file, "handshake-timeout", null),
                                d.handshakeTimeout()),
                        seconds("--request-timeout", pick(requestTimeout, file, "request-timeout", null),
                                d.requestTimeout()),
                        seconds("--reply-timeout", pick(replyTimeout, file, "reply-timeout", null), d.replyTimeout()));
    }

    private static int inFlightBytes(String what, String text, int def) {
        if (text == null) {
            return def;
        }
        long bytes = Sizes.parseBytes(what, text);
        long min = 32L << 20;
        if (bytes < min || bytes > Integer.MAX_VALUE) {
            throw new InvalidValueException(what + " '" + text + "' must be from 32M to 2047M");
        }
        return (int) bytes;
    }

    private static java.time.Duration seconds(String what, String text, java.time.Duration def) {
        if (text == null) {
            return def;
        }
        double seconds;
        try {
            seconds = Double.parseDouble(text.trim());
        } catch (NumberFormatException e) {
            seconds = -1;
        }
        if (!(seconds >= 0 && seconds <= 1e6)) {
            throw new InvalidValueException(what + " '" + text + "' must be a number of seconds from 0 (never) to 1000000");
        }
        return java.time.Duration.ofNanos((long) (seconds * 1e9));
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
                "max-control-connections",
                "max-connections-per-export", "max-bytes-in-flight", "max-bytes-in-flight-per-connection",
                "handshake-timeout", "request-timeout", "reply-timeout", "large-reads",
                "tls", "tls-cert", "tls-key", "tls-ca", "tls-verify-peer", "tls-psk", "allow", "read-only",
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
