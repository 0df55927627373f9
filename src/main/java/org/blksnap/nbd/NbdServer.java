package org.blksnap.nbd;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import org.blksnap.util.ConnectionLimit;
import org.blksnap.util.FirstFailure;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An NBD server (fixed newstyle, structured replies, metadata contexts, every command of the
 * baseline protocol plus TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS, FUA, DF, REQ_ONE, FAST_ZERO)
 * serving the exports of an {@link ExportProvider} over TCP and Unix domain sockets.
 *
 * <p>Each connection has one virtual reader thread; its requests run concurrently on virtual
 * threads and reply out of order, whole messages at a time. A connection's failure is logged and
 * ends only that connection. See {@code docs/nbd.md} for the protocol coverage.
 *
 * <p>Memory: each connection owns {@link #CONNECTION_BYTES} of native buffers from the moment it is
 * accepted, freed when it ends; payload buffers come from a pool that keeps at most 128 MiB of free
 * buffers and frees the rest at once, and all of them when the server closes. Connections beyond
 * {@link Config#maxConnections()} are refused politely (every option answered NBD_REP_ERR_POLICY, see
 * {@code Refusal}), at most {@link #MAX_REFUSING} at a time; further ones are closed at once. Lines
 * about misbehaving clients are rate-limited (see {@code ServerLogs}).
 *
 * <p>TLS: with {@link NbdTls} settings other than {@link NbdTls#OFF}, clients upgrade with
 * {@code NBD_OPT_STARTTLS} (or must, in {@link NbdTls.Mode#REQUIRE}); see {@code docs/nbd.md}.
 * Which client may see and open which export is the provider's to say ({@link ExportProvider#allows}).
 *
 * <p>Thread-safe. {@link #close()} stops listening, ends every connection (in-flight requests
 * finish or fail with ESHUTDOWN within {@link Config#shutdownGrace()}) and stops every thread.
 */
public final class NbdServer implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(NbdServer.class);
    /** Native bytes a connection in transmission owns (input buffer, reply headers, reply batch): 328 KiB. */
    public static final long CONNECTION_BYTES = ConnectionMemory.MAX_BYTES;
    /** Connections being refused at once (each costs a virtual thread and a few hundred bytes of heap). */
    static final int MAX_REFUSING = 64;

    /**
     * How the data of READs of at least 64 KiB leave the server when the device is a file (or a
     * snapshot image of files) and the connection is not under TLS; smaller READs, other devices and
     * TLS always go through a buffer. See {@code LargeReadPath} for the measurements behind AUTO.
     */
    public enum LargeReads {
        /** Through a buffer for a client on this host while few connections read large, else by sendfile. */
        AUTO,
        /** Always by sendfile: no copy in this process. */
        SENDFILE,
        /** Always through a buffer (pread, then write). */
        COPY;

        /**
         * The mode a daemon flag names: auto, sendfile or copy (any case).
         *
         * @throws IllegalArgumentException naming {@code --large-reads} and the choices
         */
        public static LargeReads parse(String text) {
            try {
                return valueOf(text.trim().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--large-reads '" + text + "' must be auto, sendfile or copy");
            }
        }
    }

    /**
     * Server settings.
     *
     * @param readOnly                serve every export read-only, whatever {@link Export#readOnly()} says
     * @param maxConnections          connections served at once (>= 1); those beyond are refused (NBD_REP_ERR_POLICY)
     * @param maxConnectionsPerExport connections in transmission on one export at once (>= 1); a GO beyond it is
     *                                answered NBD_REP_ERR_POLICY, an EXPORT_NAME with a hang-up
     * @param maxRequestsInFlight     requests of one connection executing at once (>= 1); the reader waits beyond
     * @param maxBytesInFlight        READ/WRITE/BLOCK_STATUS payload bytes of one connection in flight (>= 32 MiB);
     *                                the reader waits beyond, before it allocates
     * @param maxServerBytesInFlight  the same, summed over all connections (>= 32 MiB); a connection that would go
     *                                beyond waits for replies of any connection to drain
     * @param holeDetectionMinBytes   on exports with {@link Export#sparseReads()}, structured READs of at least
     *                                this many bytes look up the allocation map and send holes as OFFSET_HOLE
     *                                chunks; smaller ones are sent as data
     * @param shutdownGrace           how long closing waits for in-flight requests of a connection
     * @param handshakeTimeout        how long a client may take from connect to transmission (zero: unlimited)
     * @param requestTimeout          how long a request may take to arrive once its first byte has, payload
     *                                included (zero: unlimited); idle time between requests is not limited
     * @param replyTimeout            how long one reply may take to be written, i.e. for the client to read it
     *                                (zero: unlimited)
     * @param largeReads              how READs of at least 64 KiB of file-backed devices leave the server
     */
    public record Config(boolean readOnly, int maxConnections, int maxConnectionsPerExport, int maxRequestsInFlight,
                         int maxBytesInFlight, int maxServerBytesInFlight, int holeDetectionMinBytes,
                         Duration shutdownGrace, Duration handshakeTimeout, Duration requestTimeout,
                         Duration replyTimeout, LargeReads largeReads) {
        public Config {
            if (maxConnections < 1) {
                throw new IllegalArgumentException("maxConnections (" + maxConnections + ") must be >= 1");
            }
            if (maxConnectionsPerExport < 1) {
                throw new IllegalArgumentException("maxConnectionsPerExport (" + maxConnectionsPerExport
                        + ") must be >= 1");
            }
            if (maxRequestsInFlight < 1) {
                throw new IllegalArgumentException("maxRequestsInFlight (" + maxRequestsInFlight + ") must be >= 1");
            }
            if (maxBytesInFlight < NbdTransmissionDescriptor.MAX_PAYLOAD_BYTES) {
                throw new IllegalArgumentException("maxBytesInFlight (" + maxBytesInFlight + ") must be >= "
                        + NbdTransmissionDescriptor.MAX_PAYLOAD_BYTES);
            }
            if (maxServerBytesInFlight < NbdTransmissionDescriptor.MAX_PAYLOAD_BYTES) {
                throw new IllegalArgumentException("maxServerBytesInFlight (" + maxServerBytesInFlight + ") must be >= "
                        + NbdTransmissionDescriptor.MAX_PAYLOAD_BYTES);
            }
            if (holeDetectionMinBytes < 0) {
                throw new IllegalArgumentException("holeDetectionMinBytes (" + holeDetectionMinBytes + ") must be >= 0");
            }
            Objects.requireNonNull(shutdownGrace, "shutdownGrace");
            Objects.requireNonNull(largeReads, "largeReads");
            for (Duration t : new Duration[] {handshakeTimeout, requestTimeout, replyTimeout}) {
                if (t == null || t.isNegative()) {
                    throw new IllegalArgumentException("timeouts (" + handshakeTimeout + ", " + requestTimeout + ", "
                            + replyTimeout + ") must be >= 0");
                }
            }
        }

        /** Connections served at once by default. */
        public static final int DEFAULT_MAX_CONNECTIONS = 256;
        /** Payload bytes in flight over all connections by default: 256 MiB. */
        public static final int DEFAULT_MAX_SERVER_BYTES_IN_FLIGHT = 256 << 20;
        /** Default handshake timeout (qemu-nbd's --handshake-limit is 10 s; interactive option mode needs more). */
        public static final Duration DEFAULT_HANDSHAKE_TIMEOUT = Duration.ofSeconds(30);
        /** Default request timeout: a 32 MiB WRITE must arrive at >= 1.1 MiB/s. */
        public static final Duration DEFAULT_REQUEST_TIMEOUT = Duration.ofSeconds(30);
        /** Default reply timeout: a 32 MiB READ reply must be read at >= 0.55 MiB/s. */
        public static final Duration DEFAULT_REPLY_TIMEOUT = Duration.ofSeconds(60);

        /**
         * Writable exports, 256 connections (any number of them on one export), 128 requests / 64 MiB in
         * flight per connection and 256 MiB in all, holes from 64 KiB, 5 s grace, timeouts 30 s
         * (handshake), 30 s (request), 60 s (reply).
         */
        public static Config defaults() {
            return new Config(false, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS, 128, 64 * 1024 * 1024,
                    DEFAULT_MAX_SERVER_BYTES_IN_FLIGHT, 64 * 1024, Duration.ofSeconds(5), DEFAULT_HANDSHAKE_TIMEOUT,
                    DEFAULT_REQUEST_TIMEOUT, DEFAULT_REPLY_TIMEOUT, LargeReads.AUTO);
        }

        /**
         * Sets the daemon-wide limit; a per-export limit that was not below the old daemon-wide one
         * follows it, one that was stays (at most the new limit).
         */
        public Config withMaxConnections(int value) {
            int perExport = maxConnectionsPerExport >= maxConnections ? value : Math.min(maxConnectionsPerExport, value);
            return new Config(readOnly, value, Math.max(perExport, 1),
                    maxRequestsInFlight, maxBytesInFlight, maxServerBytesInFlight, holeDetectionMinBytes, shutdownGrace,
                    handshakeTimeout, requestTimeout, replyTimeout, largeReads);
        }

        public Config withMaxConnectionsPerExport(int value) {
            return new Config(readOnly, maxConnections, value, maxRequestsInFlight, maxBytesInFlight,
                    maxServerBytesInFlight, holeDetectionMinBytes, shutdownGrace, handshakeTimeout, requestTimeout,
                    replyTimeout, largeReads);
        }

        public Config withMaxBytesInFlight(int perConnection, int server) {
            return new Config(readOnly, maxConnections, maxConnectionsPerExport, maxRequestsInFlight, perConnection,
                    server, holeDetectionMinBytes, shutdownGrace, handshakeTimeout, requestTimeout, replyTimeout,
                    largeReads);
        }

        public Config withReadOnly(boolean value) {
            return new Config(value, maxConnections, maxConnectionsPerExport, maxRequestsInFlight, maxBytesInFlight,
                    maxServerBytesInFlight, holeDetectionMinBytes, shutdownGrace, handshakeTimeout, requestTimeout,
                    replyTimeout, largeReads);
        }

        public Config withShutdownGrace(Duration value) {
            return new Config(readOnly, maxConnections, maxConnectionsPerExport, maxRequestsInFlight, maxBytesInFlight,
                    maxServerBytesInFlight, holeDetectionMinBytes, value, handshakeTimeout, requestTimeout,
                    replyTimeout, largeReads);
        }

        public Config withHoleDetectionMinBytes(int value) {
            return new Config(readOnly, maxConnections, maxConnectionsPerExport, maxRequestsInFlight, maxBytesInFlight,
                    maxServerBytesInFlight, value, shutdownGrace, handshakeTimeout, requestTimeout, replyTimeout,
                    largeReads);
        }

        /** How large READs of file-backed devices leave the server ({@link LargeReads#AUTO} by default). */
        public Config withLargeReads(LargeReads value) {
            return new Config(readOnly, maxConnections, maxConnectionsPerExport, maxRequestsInFlight, maxBytesInFlight,
                    maxServerBytesInFlight, holeDetectionMinBytes, shutdownGrace, handshakeTimeout, requestTimeout,
                    replyTimeout, value);
        }

        /** Handshake, request and reply timeouts (zero: unlimited). */
        public Config withTimeouts(Duration handshake, Duration request, Duration reply) {
            return new Config(readOnly, maxConnections, maxConnectionsPerExport, maxRequestsInFlight, maxBytesInFlight,
                    maxServerBytesInFlight, holeDetectionMinBytes, shutdownGrace, handshake, request, reply,
                    largeReads);
        }
    }

    private final ExportProvider provider;
    private final Config config;
    private final BufferPool pool;
    private final LargeReadPath largeReadPath;
    private final NbdTls tls;
    private final Set<Connection> connections = ConcurrentHashMap.newKeySet();
    private final Map<String, StatsCounters> stats = new ConcurrentHashMap<>();
    private volatile Function<String, RequestObserver> observers = name -> RequestObserver.NONE;
    private final List<Listener> listeners = new CopyOnWriteArrayList<>();
    private final AtomicLong connectionIds = new AtomicLong();
    /** Calls of {@link #closeExport} so far; each export remembers the count at its latest close. */
    private final AtomicLong exportCloses = new AtomicLong();
    private final Map<String, Long> exportClosedAt = new ConcurrentHashMap<>();
    private final ThreadFactory connectionThreads = Thread.ofVirtual().name("nbd-conn-", 1).factory();
    private final ThreadFactory requestThreads = Thread.ofVirtual().factory();
    private final AtomicLong connectionMemory = new AtomicLong();
    /** Connections served and refusals running ({@link Config#maxConnections()}, {@link #MAX_REFUSING}). */
    private final ConnectionLimit limit;
    /** Payload bytes in flight over all connections ({@link Config#maxServerBytesInFlight()}); fair, so big requests get their turn. */
    private final Semaphore bytesInFlight;
    /** Connections in transmission per export name ({@link Config#maxConnectionsPerExport()}). */
    private final Map<String, AtomicInteger> exportConnections = new ConcurrentHashMap<>();
    /** Channels of the refusals running, closed by {@link #close()}. */
    private final Set<NbdChannel> refusals = ConcurrentHashMap.newKeySet();
    private final ServerLogs logs = new ServerLogs();
    private final Thread logFlusher;
    private final Thread reaper;
    private volatile boolean closing;

    private record Listener(ServerSocketChannel channel, Thread acceptor, Path unixPath) {
    }

    public NbdServer(ExportProvider provider) {
        this(provider, Config.defaults());
    }

    public NbdServer(ExportProvider provider, Config config) {
        this(provider, config, NbdTls.OFF);
    }

    /** A server that offers (or requires) TLS through {@code NBD_OPT_STARTTLS}, see {@link NbdTls}. */
    public NbdServer(ExportProvider provider, Config config, NbdTls tls) {
        this(provider, config, new BufferPool(), tls);
    }

    /** With a given payload pool (tests: one that runs out of memory early). */
    NbdServer(ExportProvider provider, Config config, BufferPool pool) {
        this(provider, config, pool, NbdTls.OFF);
    }

    private NbdServer(ExportProvider provider, Config config, BufferPool pool, NbdTls tls) {
        this.provider = Objects.requireNonNull(provider, "provider");
        this.config = Objects.requireNonNull(config, "config");
        this.pool = Objects.requireNonNull(pool, "pool");
        this.largeReadPath = new LargeReadPath(config.largeReads(), Runtime.getRuntime().availableProcessors());
        this.tls = Objects.requireNonNull(tls, "tls");
        this.limit = new ConnectionLimit(config.maxConnections(), MAX_REFUSING);
        this.bytesInFlight = new Semaphore(config.maxServerBytesInFlight(), true);
        this.logFlusher = Thread.ofVirtual().name("nbd-log-flusher").start(this::flushLogs);
        this.reaper = Thread.ofVirtual().name("nbd-reaper").start(this::reap);
    }

    /**
     * Closes the socket of every connection past one of its deadlines ({@link Deadlines}), until
     * {@link #close()} interrupts it: what its threads were blocked in (reading a stalled request,
     * writing to a client that does not read) fails, and the connection ends on its usual path.
     */
    private void reap() {
        long interval = Deadlines.checkIntervalNanos(config.handshakeTimeout(), config.requestTimeout(),
                config.replyTimeout());
        while (true) {
            try {
                Thread.sleep(Duration.ofNanos(interval));
            } catch (InterruptedException e) {
                return;
            }
            try {
                long now = System.nanoTime();
                for (Connection c : connections) {
                    String why = c.deadlines().expired(now);
                    if (why != null && c.timeOut()) {
                        logs.timeouts.log("{}: dropped: the client {}", c, why);
                        c.forceClose();
                    }
                }
            } catch (RuntimeException e) {
                LOG.error("checking connection deadlines failed; trying again", e);
            }
        }
    }

    /** The payload bytes in flight over all connections. */
    Semaphore bytesInFlight() {
        return bytesInFlight;
    }

    /**
     * Counts a connection entering transmission on {@code exportName}; null if it may, else why not
     * (the caller must then not call {@link #leaveExport}).
     */
    String enterExport(String exportName) {
        AtomicInteger n = exportConnections.computeIfAbsent(exportName, k -> new AtomicInteger());
        int limit = config.maxConnectionsPerExport();
        if (n.incrementAndGet() > limit) {
            n.decrementAndGet();
            return "too many connections to export '" + exportName + "' (" + limit + ", the limit); try again later";
        }
        return null;
    }

    /** A connection counted by {@link #enterExport} ended. */
    void leaveExport(String exportName) {
        exportConnections.computeIfPresent(exportName, (k, n) -> n.decrementAndGet() == 0 ? null : n);
    }

    /** Writes the counts of rate-limited lines every interval, until {@link #close()} interrupts it. */
    private void flushLogs() {
        try {
            while (true) {
                Thread.sleep(ServerLogs.INTERVAL);
                logs.flush();
            }
        } catch (InterruptedException e) {
            logs.flush();
        } catch (RuntimeException e) {
            LOG.error("flushing the rate-limited log lines failed; their counts are written at the next event", e);
        }
    }

    /** Listens on {@code 127.0.0.1:port}; see {@link #listenTcp(String, int)}. */
    public InetSocketAddress listenTcp(int port) throws IOException {
        return listenTcp("127.0.0.1", port);
    }

    /**
     * Listens on a TCP address (TCP_NODELAY on every connection).
     *
     * @param host a host name or address to bind, e.g. {@code 127.0.0.1}
     * @param port the port, or 0 for an ephemeral one
     * @return the bound address (with the actual port)
     * @throws IOException if binding fails, or the server is closed
     */
    public InetSocketAddress listenTcp(String host, int port) throws IOException {
        checkOpen();
        ServerSocketChannel ch = ServerSocketChannel.open(StandardProtocolFamily.INET);
        try {
            ch.bind(new InetSocketAddress(host, port), 128);
        } catch (IOException e) {
            ch.close();
            throw new IOException("cannot listen on " + host + ":" + port + ": " + e.getMessage(), e);
        }
        InetSocketAddress bound = (InetSocketAddress) ch.getLocalAddress();
        startListener(ch, null, "tcp " + bound);
        return bound;
    }

    /** Whether a server answers on that socket path (a stale socket file refuses the connection). */
    private static boolean acceptsConnections(UnixDomainSocketAddress address) {
        try {
            SocketChannel.open(address).close();
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    /**
     * Listens on a Unix domain socket. A stale socket file (nothing accepting on it) is replaced;
     * the file is deleted on {@link #close()}.
     *
     * @return the socket path
     * @throws IOException if the path is in use by a live server, or binding fails
     */
    public Path listenUnix(Path socketPath) throws IOException {
        checkOpen();
        Path path = socketPath.toAbsolutePath();
        UnixDomainSocketAddress address = UnixDomainSocketAddress.of(path);
        if (Files.exists(path)) {
            if (acceptsConnections(address)) {
                throw new IOException("cannot listen on " + path + ": another server accepts connections there");
            }
            Files.deleteIfExists(path);
        }
        ServerSocketChannel ch = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            ch.bind(address, 128);
        } catch (IOException e) {
            ch.close();
            throw new IOException("cannot listen on " + path + ": " + e.getMessage(), e);
        }
        startListener(ch, path, "unix " + path);
        return path;
    }

    private void startListener(ServerSocketChannel ch, Path unixPath, String what) {
        Thread acceptor = Thread.ofVirtual().name("nbd-accept " + what).unstarted(() -> acceptLoop(ch, what));
        listeners.add(new Listener(ch, acceptor, unixPath));
        acceptor.start();
        LOG.info("NBD server listening on {}", what);
    }

    private void acceptLoop(ServerSocketChannel server, String what) {
        while (!closing) {
            SocketChannel ch;
            try {
                ch = server.accept();
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                if (closing) {
                    return;
                }
                LOG.warn("accept on {} failed; retrying", what, e);
                try {
                    Thread.sleep(100);
                } catch (InterruptedException ie) {
                    return;
                }
                continue;
            }
            String peer = peerOf(ch, what);
            if (closing) {
                LOG.debug("closing a connection from {} accepted while the server closes", peer);
                closeQuietly(ch);
                continue;
            }
            ConnectionLimit.Admission admission = limit.admit();
            if (admission == ConnectionLimit.Admission.SERVE) {
                serveAdmitted(NbdChannel.of(ch, peer));
            } else {
                refuse(NbdChannel.of(ch, peer), limit.reason(), admission);
            }
        }
    }

    /**
     * Refuses politely ({@link Refusal}) when {@code admission} is {@link ConnectionLimit.Admission#REFUSE},
     * or closes at once when it is {@link ConnectionLimit.Admission#DROP} (too many refusals running).
     */
    private void refuse(NbdChannel channel, String why, ConnectionLimit.Admission admission) {
        if (admission == ConnectionLimit.Admission.DROP) {
            logs.refused.log("refused connection from {} by closing it: {}, and {} refusals running",
                    channel.describe(), why, limit.maxRefusing());
            closeQuietly(channel);
            return;
        }
        logs.refused.log("refusing connection from {}: {}", channel.describe(), why);
        refusals.add(channel);
        Runnable ended = () -> {
            refusals.remove(channel);
            limit.refusalEnded();
        };
        Refusal r = new Refusal(channel, "too many connections to this server (" + why + "); try again later", ended);
        try {
            Thread.ofVirtual().name("nbd-refuse").start(r);
        } catch (RuntimeException | Error e) {
            ended.run();
            closeQuietly(channel);
            throw e;
        }
        if (closing) {
            closeQuietly(channel); // close() may have passed over it already
        }
    }

    private static void closeQuietly(java.io.Closeable c) {
        try {
            c.close();
        } catch (IOException e) {
            // nothing to do
        }
    }

    private static String peerOf(SocketChannel ch, String what) {
        try {
            Object remote = ch.getRemoteAddress();
            String r = remote == null ? "" : remote.toString();
            return r.isEmpty() ? what : r;
        } catch (IOException e) {
            return what;
        }
    }

    /**
     * Serves one already-connected channel (in-memory tests use pipes); when the system has no memory
     * left for the connection's buffers, it is refused instead and null is returned.
     */
    Connection serve(NbdChannel channel) {
        limit.serveAnyway();
        return serveAdmitted(channel);
    }

    /** {@link #serve}, for a channel whose slot in {@link #limit} is already taken. */
    private Connection serveAdmitted(NbdChannel channel) {
        Connection c;
        try {
            c = new Connection(connectionIds.incrementAndGet(), this, channel, config, requestThreads);
        } catch (OutOfMemoryError e) {
            limit.release();
            logs.memoryShortage.log("no native memory for a connection from {}: {}", channel.describe(), e.getMessage());
            refuse(channel, "no memory for another connection", limit.refuse());
            return null;
        }
        connections.add(c);
        try {
            c.start(connectionThreads);
        } catch (RuntimeException | Error e) {
            if (connections.remove(c)) {
                limit.release();
            }
            closeQuietly(channel);
            throw e;
        }
        return c;
    }

    /**
     * Ends every connection in transmission on the export {@code name}, e.g. because its device
     * is going away: requests already running finish, requests not started yet fail with
     * {@code NBD_ESHUTDOWN}, then the connections are closed. Returns once they are closed (at
     * most about {@link Config#shutdownGrace()}). New connections are the provider's business
     * ({@link ExportProvider#open} returning null); a connection still in its handshake that had
     * already opened the export ends as soon as it enters transmission
     * ({@link #exportClosedSince}), so none is left serving a device that went away.
     *
     * @return the number of connections ended (not counting those still in their handshake)
     */
    public int closeExport(String name) {
        // Recorded before the scan: a connection entering transmission after the scan sees it.
        exportClosedAt.put(name, exportCloses.incrementAndGet());
        List<Connection> ending = new ArrayList<>();
        for (Connection c : connections) {
            if (name.equals(c.exportName())) {
                ending.add(c);
                c.terminate();
            }
        }
        awaitAll(ending);
        if (!ending.isEmpty()) {
            LOG.info("closed {} connection(s) of export {}", ending.size(), name);
        }
        return ending.size();
    }

    /** Waits for the connections to end, all within one deadline, and closes the sockets of those that did not. */
    private void awaitAll(List<Connection> ending) {
        Duration wait = config.shutdownGrace().plusSeconds(2);
        long deadline = System.nanoTime() + wait.toNanos();
        for (Connection c : ending) {
            try {
                if (!c.awaitEnd(Duration.ofNanos(Math.max(0, deadline - System.nanoTime())))) {
                    LOG.warn("{} did not end within {} (a request is stuck in the device); closing its socket", c, wait);
                    c.forceClose();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** Connections currently open (in handshake or transmission), not counting those being refused. */
    public int connectionCount() {
        return connections.size();
    }

    /**
     * Native memory of the server right now, in bytes: the buffers of open connections plus the
     * payload buffers in use or kept for reuse.
     */
    public long nativeMemoryBytes() {
        return connectionMemory.get() + pool.allocatedBytes();
    }

    /**
     * READs so far that could leave either way and left by sendfile (see {@link Config#largeReads()}):
     * of at least 64 KiB, of devices that hand file ranges, with structured replies, without DF and
     * not under TLS (the others always go through a buffer and are not counted). Thread-safe.
     */
    public long largeReadsBySendfile() {
        return largeReadPath.bySendfile();
    }

    /** As {@link #largeReadsBySendfile()}, for those that left through a buffer (pread, then write). */
    public long largeReadsThroughBuffer() {
        return largeReadPath.throughBuffer();
    }

    /** Native bytes held by the buffers of open connections (0 once every connection has ended). */
    long connectionMemoryBytes() {
        return connectionMemory.get();
    }

    /** Per-export counters, by export name, for exports that had at least one connection. */
    public Map<String, ExportStats> stats() {
        Map<String, ExportStats> result = new TreeMap<>();
        stats.forEach((k, v) -> result.put(k, v.snapshot()));
        return result;
    }

    /** Stops listening and ends every connection; idempotent. Socket files are deleted. */
    @Override
    public void close() throws IOException {
        if (closing) {
            return;
        }
        closing = true;
        FirstFailure failures = new FirstFailure();
        for (Listener l : listeners) {
            failures.run(l.channel()::close);
        }
        for (Listener l : listeners) {
            try {
                l.acceptor().join(Duration.ofSeconds(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            if (l.unixPath() != null) {
                failures.run(() -> Files.deleteIfExists(l.unixPath()));
            }
        }
        for (NbdChannel refused : refusals) {
            closeQuietly(refused);
        }
        List<Connection> all = new ArrayList<>(connections);
        for (Connection c : all) {
            c.terminate();
        }
        awaitAll(all);
        pool.close(); // buffers of requests still running are freed as they are released
        reaper.interrupt();
        logFlusher.interrupt();
        try {
            logFlusher.join(Duration.ofSeconds(5));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        LOG.info("NBD server closed");
        failures.throwIfAny(IOException.class, e -> new IOException("closing the NBD server failed: " + e.getMessage(), e));
    }

    private void checkOpen() throws IOException {
        if (closing) {
            throw new IOException("the NBD server is closed");
        }
    }

    boolean isClosing() {
        return closing;
    }

    /** How many times {@link #closeExport} was called so far; a connection reads it before its handshake. */
    long exportCloseCount() {
        return exportCloses.get();
    }

    /** Whether {@link #closeExport} closed {@code name} after the count was {@code count}. */
    boolean exportClosedSince(String name, long count) {
        Long at = exportClosedAt.get(name);
        return at != null && at > count;
    }

    ExportProvider provider() {
        return provider;
    }

    NbdTls tls() {
        return tls;
    }

    BufferPool pool() {
        return pool;
    }

    LargeReadPath largeReadPath() {
        return largeReadPath;
    }

    AtomicLong connectionMemoryCounter() {
        return connectionMemory;
    }

    ServerLogs logs() {
        return logs;
    }

    StatsCounters countersFor(String exportName) {
        return stats.computeIfAbsent(exportName, k -> {
            StatsCounters c = new StatsCounters();
            c.observer = observers.apply(k);
            return c;
        });
    }

    /**
     * Hands the latency of every request of an export to {@code byExport.apply(exportName)} (asked
     * once per export, when it is first connected to, and now for those already connected to).
     * Thread-safe; meant to be called once, before clients come.
     */
    public void observeRequests(Function<String, RequestObserver> byExport) {
        observers = byExport;
        stats.forEach((name, c) -> c.observer = byExport.apply(name));
    }

    void connectionEnded(Connection c) {
        if (connections.remove(c)) {
            limit.release();
        }
    }
}
