package org.blksnap.serve;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.blksnap.backup.Repository;
import org.blksnap.backup.RepositoryException;
import org.blksnap.backup.RepositoryKey;
import org.blksnap.backup.RepositoryLocation;
import org.blksnap.nbd.NbdServer;
import org.blksnap.util.FirstFailure;

/**
 * Instant access to a backup repository: every point served over NBD as an export named
 * {@code POINT_ID/DEVICE} (docs/serve.md), read on demand through a bounded cache, read ahead for
 * sequential readers, read-only or with a per-export overlay in a temporary file.
 *
 * <p>{@link #start} opens the repository for reading (it takes no lock: backups, prune and gc may
 * run beside it) and listens; {@link #close} stops listening, ends every connection, closes the
 * overlays (their files are unlinked from the start) and removes the Unix socket. Thread-safe.
 */
public final class PointServer implements AutoCloseable {
    /** Default bound of the chunk cache, in bytes. */
    public static final long DEFAULT_CACHE_BYTES = 256L << 20;
    /** Largest read-ahead window of one sequential stream, in bytes. */
    public static final long READ_AHEAD_BYTES = 8L << 20;
    /** Chunks loaded ahead at once, by all points together. */
    static final int READ_AHEAD_IN_FLIGHT = 16;

    /**
     * What to serve and where.
     *
     * @param repo       the repository: a directory or an S3 prefix
     * @param key        the key of an encrypted repository, or null
     * @param socket     a Unix socket path, or null
     * @param listenHost a TCP host to listen on, or null for none
     * @param listenPort the TCP port (0: any free one); used with {@code listenHost}
     * @param writable   add a per-export overlay that takes writes
     * @param cacheBytes bound of the chunk cache, in bytes (0: no cache)
     * @param overlayDir where overlay files are made (unlinked at once)
     * @param readAheadBytes largest read-ahead window per stream, in bytes (0: no read-ahead)
     */
    public record Config(RepositoryLocation repo, RepositoryKey key, Path socket, String listenHost, int listenPort,
                         boolean writable, long cacheBytes, Path overlayDir, long readAheadBytes) {
        /** A directory repository, unencrypted. */
        public Config(Path repo, Path socket, String listenHost, int listenPort, boolean writable, long cacheBytes,
                      Path overlayDir, long readAheadBytes) {
            this(new RepositoryLocation.Directory(repo.toAbsolutePath()), null, socket, listenHost, listenPort, writable,
                    cacheBytes, overlayDir, readAheadBytes);
        }

        public Config {
            Objects.requireNonNull(repo, "repo");
            Objects.requireNonNull(overlayDir, "overlayDir");
            if (socket == null && listenHost == null) {
                throw new IllegalArgumentException("give a Unix socket, a TCP address or both");
            }
            if (listenPort < 0 || listenPort > 65535) {
                throw new IllegalArgumentException("listenPort (" + listenPort + ") must be within 0..65535");
            }
            if (cacheBytes < 0) {
                throw new IllegalArgumentException("cacheBytes (" + cacheBytes + ") must be >= 0");
            }
            if (readAheadBytes < 0) {
                throw new IllegalArgumentException("readAheadBytes (" + readAheadBytes + ") must be >= 0");
            }
        }
    }

    private final Repository repo;
    private final ChunkCache cache;
    private final ExecutorService executor;
    private final Semaphore readAheadPermits = new Semaphore(READ_AHEAD_IN_FLIGHT);
    private final ServeLogs logs;
    private final RepositoryExports exports;
    private final NbdServer nbd;
    private final Thread flusher;
    private volatile Path socket;
    private volatile InetSocketAddress tcp;
    private boolean closed;

    private PointServer(Config c, Repository repo, Consumer<String> warn) {
        this.repo = repo;
        this.cache = new ChunkCache(c.cacheBytes());
        this.executor = Executors.newThreadPerTaskExecutor(Thread.ofVirtual().name("serve-", 0).factory());
        this.logs = new ServeLogs();
        this.exports = new RepositoryExports(repo, cache, executor, readAheadPermits,
                c.readAheadBytes(), c.writable(), c.overlayDir(), logs, warn);
        this.nbd = new NbdServer(exports, NbdServer.Config.defaults().withReadOnly(!c.writable()));
        this.flusher = Thread.ofVirtual().name("serve-log-flush").unstarted(() -> {
            try {
                while (!Thread.currentThread().isInterrupted()) {
                    Thread.sleep(ServeLogs.INTERVAL.toMillis());
                    logs.flush();
                }
            } catch (InterruptedException e) {
                // closing
            }
        });
    }

    /**
     * Opens the repository and listens.
     *
     * @param warn where non-fatal findings go (a manifest that does not read: that point is not served)
     * @throws RepositoryException NOT_FOUND, VERSION or DAMAGED: the repository cannot be read; KEY the key
     *                             does not fit; IO the S3 server cannot be reached
     * @throws IOException         the socket or address cannot be listened on, or the overlay directory is missing
     */
    public static PointServer start(Config c, Consumer<String> warn) throws RepositoryException, IOException {
        if (c.writable() && !Files.isDirectory(c.overlayDir())) {
            throw new IOException("the overlay directory " + c.overlayDir() + " is not a directory");
        }
        Repository repo = Repository.openForReading(c.repo(), c.key());
        PointServer s = new PointServer(c, repo, warn);
        try {
            if (c.socket() != null) {
                s.socket = s.nbd.listenUnix(c.socket());
            }
            if (c.listenHost() != null) {
                s.tcp = s.nbd.listenTcp(c.listenHost(), c.listenPort());
            }
        } catch (IOException | RuntimeException e) {
            try {
                s.close();
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
        s.flusher.start();
        return s;
    }

    /** The Unix socket listened on, or null. */
    public Path socket() {
        return socket;
    }

    /** The TCP address listened on (with the actual port), or null. */
    public InetSocketAddress tcpAddress() {
        return tcp;
    }

    /** The names of the exports now, oldest point first. */
    public List<String> exportNames() {
        return exports.points().stream().map(RepositoryExports::exportName).toList();
    }

    /** One line of counters: cache hits and misses, bytes cached, read-ahead, failed reads, overlays. */
    public String statsLine() {
        ChunkCache.Stats s = cache.stats();
        long prefetched = 0;
        long overlayBlocks = 0;
        for (RepositoryExports.Served x : exports.served().values()) {
            prefetched += x.device().readAhead().prefetchedChunks();
            overlayBlocks += x.overlay() == null ? 0 : x.overlay().writtenBlocks();
        }
        return "cache: " + s.hits() + " hits, " + s.misses() + " misses, " + s.usedBytes() + " of "
                + cache.capacityBytes() + " bytes in " + s.entries() + " entries, " + s.evictions() + " evicted; "
                + prefetched + " chunks read ahead; " + logs.damagedReads() + " reads failed on damaged chunks; "
                + overlayBlocks * Overlay.BLOCK_BYTES + " bytes in overlays";
    }

    ChunkCache cache() {
        return cache;
    }

    /** Read-ahead permits not in use (all of them once the prefetches are done). */
    int readAheadPermitsFree() {
        return readAheadPermits.availablePermits();
    }

    RepositoryExports exports() {
        return exports;
    }

    /** Stops serving; see the class comment. Idempotent. */
    @Override
    public void close() throws IOException {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        FirstFailure failures = new FirstFailure();
        failures.run(flusher::interrupt);
        failures.run(nbd::close);
        failures.run(() -> {
            executor.shutdownNow();
            executor.awaitTermination(10, TimeUnit.SECONDS);
        });
        failures.run(exports::close);
        failures.run(logs::flush);
        failures.run(repo::close);
        failures.throwIfAny(IOException.class, e -> new IOException("closing the server of " + repo.location() + " failed: "
                + e.getMessage(), e));
    }
}
