package org.blksnap.ctrl;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Consumer;
import java.util.stream.Collectors;
import jdk.net.ExtendedSocketOptions;
import jdk.net.UnixDomainPrincipal;
import org.blksnap.ctrl.api.ErrorReply;
import org.blksnap.ctrl.api.InvalidValueException;
import org.blksnap.ctrl.api.Operation;
import org.blksnap.ctrl.api.WireJson;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.util.ConnectionLimit;
import org.blksnap.util.RateLimitedLog;
import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.io.Content;
import org.eclipse.jetty.server.Handler;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.unixdomain.server.UnixDomainServerConnector;
import org.eclipse.jetty.util.Callback;
import org.eclipse.jetty.util.thread.VirtualThreadPool;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.slf4j.event.Level;

/**
 * The control API: HTTP/1.1 with JSON bodies on a Unix domain socket of mode 0600 (the equivalent of
 * the root-only {@code /dev/blksnap}). Each request runs on its own virtual thread, so a
 * {@code wait-event} blocks nothing else. See docs/control-api.md for every operation.
 *
 * <p>Connections: at most {@code maxConnections} (default {@link #DEFAULT_MAX_CONNECTIONS}) are
 * served at once, by the rule the NBD server applies ({@link ConnectionLimit}): every request on a
 * connection beyond them is answered EAGAIN (HTTP 503) "too many control connections (N
 * connections already, the limit); try again later" and the connection closed after the answer
 * (one that sends nothing within {@link #REFUSAL_IDLE} is closed); at most {@link #MAX_REFUSING}
 * such connections stay open at once, further ones are closed at once. Each refusal is logged,
 * rate-limited.
 *
 * <p>Lifecycle: {@link #start}, then {@link #stopAccepting()} (new requests get ESHUTDOWN while
 * requests in progress finish), then {@link #close()}.
 */
public final class ControlServer implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(ControlServer.class);
    /** Largest request body, in bytes. */
    static final int MAX_BODY_BYTES = 1 << 20;
    /**
     * How long a control connection may sit without sending or reading anything while the server
     * waits for it (the rest of the request line, headers or body, or for it to read the answer);
     * then Jetty closes it. Handlers that block on the daemon's own work ({@code wait-event},
     * {@code take}) are not cut by it. Request headers are at most Jetty's 8 KiB.
     */
    public static final java.time.Duration IDLE_TIMEOUT = java.time.Duration.ofSeconds(30);
    /** Control connections served at once unless configured otherwise ({@code blksnapd --max-control-connections}). */
    public static final int DEFAULT_MAX_CONNECTIONS = 64;
    /** Connections beyond the limit kept open at once to be answered EAGAIN; further ones are closed at once. */
    static final int MAX_REFUSING = 16;
    /** How long a connection beyond the limit may take to send its request before it is closed. */
    static final Duration REFUSAL_IDLE = Duration.ofSeconds(2);

    private final Path socket;
    private final Server server;
    private final Operations operations;
    private volatile boolean accepting = true;

    private final AccessPolicy access;
    /** Refused callers, counted per 10 s beyond the first few: a local user cannot flood the log. */
    private final RateLimitedLog refusals = new RateLimitedLog(LOG, Level.WARN, "control requests refused", 5,
            Duration.ofSeconds(10));

    /** Connections served and refused; the same rule as the NBD server's. */
    private final ConnectionLimit limit;
    /** What became of each open connection, set when it opened. */
    private final Map<org.eclipse.jetty.io.Connection, ConnectionLimit.Admission> admissions = new ConcurrentHashMap<>();
    /** Connections refused for the limit, counted per 10 s beyond the first few. */
    private final RateLimitedLog busy = new RateLimitedLog(LOG, Level.WARN, "control connections refused (too many)", 5,
            Duration.ofSeconds(10));
    /** Connections closed at once (too many refusals running), counted apart so refusals do not hide them. */
    private final RateLimitedLog dropped = new RateLimitedLog(LOG, Level.WARN,
            "control connections closed at once (too many refusals)", 5, Duration.ofSeconds(10));

    private ControlServer(Path socket, Operations operations, Server server, AccessPolicy access, int maxConnections) {
        this.socket = socket;
        this.operations = operations;
        this.server = server;
        this.access = access;
        this.limit = new ConnectionLimit(maxConnections, MAX_REFUSING);
    }

    /**
     * Starts serving on {@code socket} (a stale socket file there is replaced; the caller holds the
     * data directory lock, so it cannot belong to a live daemon).
     *
     * @param devices       the daemon's side of adding, removing and listing devices
     * @param exports       NBD URIs of devices and images, for the answers
     * @param commands      how {@code fsfreeze} is run
     * @param eventObserver sees every event handed out by wait-event (metrics)
     */
    public static ControlServer start(Blksnap engine, DeviceAdmin devices, Path socket, ExportLocator exports,
                                      FreezeHooks.CommandRunner commands, Consumer<SnapshotEvent> eventObserver)
            throws IOException {
        return start(engine, devices, socket, exports, commands, eventObserver, AccessPolicy.SOCKET_MODE_ONLY);
    }

    /** As above, with another idle timeout (tests). */
    static ControlServer start(Blksnap engine, DeviceAdmin devices, Path socket, ExportLocator exports,
                               FreezeHooks.CommandRunner commands, Consumer<SnapshotEvent> eventObserver,
                               java.time.Duration idleTimeout) throws IOException {
        return start(engine, devices, socket, exports, commands, eventObserver, AccessPolicy.SOCKET_MODE_ONLY,
                idleTimeout, DEFAULT_MAX_CONNECTIONS);
    }

    /** As above, with another limit on connections (tests). */
    static ControlServer start(Blksnap engine, DeviceAdmin devices, Path socket, ExportLocator exports,
                               FreezeHooks.CommandRunner commands, Consumer<SnapshotEvent> eventObserver,
                               java.time.Duration idleTimeout, int maxConnections) throws IOException {
        return start(engine, devices, socket, exports, commands, eventObserver, AccessPolicy.SOCKET_MODE_ONLY,
                idleTimeout, maxConnections);
    }

    /**
     * As {@link #start(Blksnap, DeviceAdmin, Path, ExportLocator, FreezeHooks.CommandRunner, Consumer)},
     * with every request's caller admitted by {@code access} from its peer credentials
     * ({@code SO_PEERCRED}) and every path it names checked by it; the socket is 0660 with
     * {@link AccessPolicy#socketGroup()} when that is set.
     */
    public static ControlServer start(Blksnap engine, DeviceAdmin devices, Path socket, ExportLocator exports,
                                      FreezeHooks.CommandRunner commands, Consumer<SnapshotEvent> eventObserver,
                                      AccessPolicy access) throws IOException {
        return start(engine, devices, socket, exports, commands, eventObserver, access, DEFAULT_MAX_CONNECTIONS);
    }

    /**
     * As above, serving at most {@code maxConnections} connections at once (>= 1); requests on
     * connections beyond them are answered EAGAIN.
     */
    public static ControlServer start(Blksnap engine, DeviceAdmin devices, Path socket, ExportLocator exports,
                                      FreezeHooks.CommandRunner commands, Consumer<SnapshotEvent> eventObserver,
                                      AccessPolicy access, int maxConnections) throws IOException {
        return start(engine, devices, socket, exports, commands, eventObserver, access, IDLE_TIMEOUT, maxConnections);
    }

    private static ControlServer start(Blksnap engine, DeviceAdmin devices, Path socket, ExportLocator exports,
                                       FreezeHooks.CommandRunner commands, Consumer<SnapshotEvent> eventObserver,
                                       AccessPolicy access, java.time.Duration idleTimeout, int maxConnections)
            throws IOException {
        if (maxConnections < 1) {
            throw new InvalidValueException("maxConnections (" + maxConnections + ") must be >= 1");
        }
        Path parent = socket.toAbsolutePath().getParent();
        Files.createDirectories(parent);
        Files.deleteIfExists(socket);
        VirtualThreadPool threads = new VirtualThreadPool();
        threads.setName("control");
        Server server = new Server(threads);
        server.setStopTimeout(2000);
        ControlServer cs = new ControlServer(socket, new Operations(engine, devices, exports, commands,
                eventObserver, access), server, access, maxConnections);
        // Bound inside a fresh 0700 directory, made 0600, then renamed into place: the socket is never
        // reachable under a looser mode, whatever the directory it ends up in allows.
        Path privateDir = privateDirectory(parent);
        Path bound = privateDir.resolve("s");
        UnixDomainServerConnector connector = new UnixDomainServerConnector(server);
        connector.setUnixDomainPath(bound);
        connector.setIdleTimeout(idleTimeout.toMillis());
        connector.addEventListener(cs.new Admitter());
        server.addConnector(connector);
        server.setHandler(cs.new ApiHandler());
        try {
            server.start();
            GroupPrincipal group = access.socketGroup();
            if (group == null) {
                Files.setPosixFilePermissions(bound, PosixFilePermissions.fromString("rw-------"));
            } else {
                Files.getFileAttributeView(bound, PosixFileAttributeView.class).setGroup(group);
                Files.setPosixFilePermissions(bound, PosixFilePermissions.fromString("rw-rw----"));
            }
            Files.move(bound, socket, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (Exception e) {
            try {
                server.stop();
            } catch (Exception suppressed) {
                e.addSuppressed(suppressed);
            }
            throw new IOException("cannot serve the control API on " + socket + ": " + e.getMessage(), e);
        } finally {
            Files.deleteIfExists(bound);
            Files.deleteIfExists(privateDir);
        }
        LOG.info("control API on {} ({})", socket, access.socketGroup() == null ? "mode 0600"
                : "mode 0660, group " + access.socketGroup().getName());
        return cs;
    }

    /** A new directory of mode 0700 beside the socket, with a short name (socket paths are limited to 107 bytes). */
    private static Path privateDirectory(Path parent) throws IOException {
        for (int attempt = 0; ; attempt++) {
            Path dir = parent.resolve(".ctl" + Integer.toHexString(ThreadLocalRandom.current().nextInt(1 << 16, 1 << 20)));
            try {
                return Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
            } catch (FileAlreadyExistsException e) {
                if (attempt > 100) {
                    throw e;
                }
            }
        }
    }

    /** The socket path. */
    public Path socket() {
        return socket;
    }

    /** Hands the agent operations ({@code agent/start}, {@code agent/wait}, {@code agent/cancel}) to {@code agent}. */
    public void serveAgent(BackupAgent agent) {
        operations.agent(agent);
    }

    /** From now on new requests are answered with ESHUTDOWN; requests in progress go on. */
    public void stopAccepting() {
        accepting = false;
    }

    @Override
    public void close() throws IOException {
        accepting = false;
        operations.close();
        try {
            server.stop();
        } catch (Exception e) {
            throw new IOException("stopping the control API on " + socket + " failed", e);
        } finally {
            Files.deleteIfExists(socket);
        }
    }

    /** Connections served at once now (those answered EAGAIN not counted). */
    public int connectionCount() {
        return limit.served();
    }

    /** Admits or refuses each connection as it opens ({@link ConnectionLimit}); gives its slot back when it closes. */
    private final class Admitter implements org.eclipse.jetty.io.Connection.Listener {
        @Override
        public void onOpened(org.eclipse.jetty.io.Connection connection) {
            ConnectionLimit.Admission a = limit.admit();
            admissions.put(connection, a);
            switch (a) {
                case SERVE -> {
                }
                case REFUSE -> {
                    busy.log("refusing a control connection: {}", limit.reason());
                    connection.getEndPoint().setIdleTimeout(REFUSAL_IDLE.toMillis());
                }
                case DROP -> {
                    dropped.log("refused a control connection by closing it: {}, and {} refusals running", limit.reason(),
                            limit.maxRefusing());
                    connection.getEndPoint().close();
                }
            }
        }

        @Override
        public void onClosed(org.eclipse.jetty.io.Connection connection) {
            ConnectionLimit.Admission a = admissions.remove(connection);
            if (a == ConnectionLimit.Admission.SERVE) {
                limit.release();
            } else if (a == ConnectionLimit.Admission.REFUSE) {
                limit.refusalEnded();
            }
        }
    }

    private final class ApiHandler extends Handler.Abstract {
        ApiHandler() {
            super(InvocationType.BLOCKING);
        }

        @Override
        public boolean handle(Request request, Response response, Callback callback) {
            String method = request.getMethod();
            String path = request.getHttpURI().getPath();
            int status = 200;
            Object body; // a Reply or an ErrorReply
            boolean refused = admissions.get(request.getConnectionMetaData().getConnection())
                    != ConnectionLimit.Admission.SERVE;
            try {
                if (refused) {
                    throw new BlksnapException(Errno.EAGAIN, "too many control connections (" + limit.reason()
                            + "); try again later");
                }
                body = dispatch(method, path, request);
            } catch (BlksnapException e) {
                status = ApiError.httpStatus(e.errno());
                body = error(e.errno(), e.getMessage());
                LOG.debug("{} {} -> {}", method, path, e.toString());
                drainQuietly(request);
            } catch (RuntimeException e) {
                status = 500;
                body = error(Errno.EIO, "internal error: " + e);
                LOG.error("{} {} failed", method, path, e);
                drainQuietly(request);
            }
            byte[] bytes = (WireJson.write(body) + "\n").getBytes(StandardCharsets.UTF_8);
            response.setStatus(status);
            response.getHeaders().put(HttpHeader.CONTENT_TYPE, "application/json");
            response.getHeaders().put(HttpHeader.CONTENT_LENGTH, bytes.length);
            if (refused) {
                response.getHeaders().put(HttpHeader.CONNECTION, "close");
            }
            response.write(true, ByteBuffer.wrap(bytes), callback);
            return true;
        }

        private Object dispatch(String method, String path, Request request) {
            AccessPolicy.Caller caller = caller(request, method, path);
            if (!accepting) {
                throw new BlksnapException(Errno.ESHUTDOWN, "the daemon is shutting down");
            }
            Operation op = Operation.ofPath(path).orElseThrow(() -> new BlksnapException(Errno.ENOENT,
                    "unknown operation " + method + " " + path + "; known: " + Arrays.stream(Operation.values())
                            .map(Operation::path).collect(Collectors.joining(", "))));
            boolean get = "GET".equals(method);
            if (!"POST".equals(method) && !(get && op.getAllowed())) {
                throw new BlksnapException(Errno.EINVAL, method + " " + path + ": method not allowed; use POST"
                        + (op.getAllowed() ? " or GET" : "") + " with a JSON object body");
            }
            if (get) {
                // A GET takes no arguments; a body sent anyway is read and dropped before the answer,
                // or the close after the answer could reset a client still sending it (fuzzing found this).
                drainQuietly(request);
            }
            org.blksnap.ctrl.api.Request<?> args;
            try {
                args = WireJson.readRequest(op, get ? "" : readBody(request, path));
            } catch (InvalidValueException e) {
                throw new BlksnapException(Errno.EINVAL, e.getMessage());
            }
            return operations.run(caller, args);
        }

        /**
         * The peer credentials of the request's connection ({@code SO_PEERCRED}, read by the kernel
         * when the peer connected), admitted or refused by the access policy.
         */
        private AccessPolicy.Caller caller(Request request, String method, String path) {
            Object transport = request.getConnectionMetaData().getConnection().getEndPoint().getTransport();
            UnixDomainPrincipal peer;
            try {
                if (!(transport instanceof SocketChannel channel)) {
                    throw new IOException("not a socket channel: " + transport);
                }
                peer = channel.getOption(ExtendedSocketOptions.SO_PEERCRED);
            } catch (IOException | UnsupportedOperationException e) {
                refusals.log("{} {}: refused, the caller's credentials cannot be read: {}", method, path, e.toString());
                throw new BlksnapException(Errno.EPERM, "the control API cannot read the caller's credentials ("
                        + e.getMessage() + ")", e);
            }
            try {
                return access.admit(peer.user(), peer.group());
            } catch (BlksnapException e) {
                refusals.log("{} {}: refused user {} (group {}): {}", method, path, peer.user().getName(),
                        peer.group().getName(), e.getMessage());
                throw e;
            }
        }

        /**
         * Reads and drops what is left of a refused request's body (bounded), so that a client still
         * sending it gets the answer instead of a broken pipe.
         */
        private void drainQuietly(Request request) {
            if (request.getLength() > MAX_BODY_BYTES) {
                return; // refused for its size: answered at once, and the connection closed after it
            }
            try (InputStream in = Content.Source.asInputStream(request)) {
                in.skipNBytes(Math.min(Math.max(0, request.getLength()), MAX_BODY_BYTES));
            } catch (IOException | RuntimeException e) {
                LOG.debug("dropping the rest of a refused request body failed: {}", e.toString());
            }
        }

        /** The body as text, bounded: the largest body is the wire's own limit, checked here alone. */
        private String readBody(Request request, String path) {
            long declared = request.getLength();
            if (declared > MAX_BODY_BYTES) {
                throw new BlksnapException(Errno.EINVAL, path + ": request body (" + declared + " bytes) exceeds "
                        + MAX_BODY_BYTES);
            }
            byte[] bytes;
            try (InputStream in = Content.Source.asInputStream(request)) {
                bytes = in.readNBytes(MAX_BODY_BYTES + 1);
            } catch (IOException e) {
                throw new BlksnapException(Errno.EIO, path + ": reading the request body failed: " + e.getMessage(), e);
            }
            if (bytes.length > MAX_BODY_BYTES) {
                throw new BlksnapException(Errno.EINVAL, path + ": request body exceeds " + MAX_BODY_BYTES + " bytes");
            }
            return new String(bytes, StandardCharsets.UTF_8);
        }
    }

    private static ErrorReply error(Errno errno, String message) {
        return ErrorReply.of(errno.name(), errno.number(), message == null || message.isBlank() ? errno.name() : message);
    }
}
