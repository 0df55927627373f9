package org.blksnap.nbd;

import static org.blksnap.nbd.NbdTransmissionDescriptor.*;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.time.Duration;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One client connection: handshake, then the transmission loop on the reader thread. Requests
 * are decoded (and WRITE payloads received) on the reader thread, then executed either inline —
 * small requests while they are quick (a moving average of their service time), and any small
 * request that is alone in flight, saving thread hand-offs — or on a thread of their own (a
 * platform thread of {@link SlowRequestThreads} for small READs found slow, a virtual thread
 * otherwise), so that up to {@link NbdServer.Config#maxRequestsInFlight()} requests run
 * concurrently and reply out of order.
 * The number of requests and the payload bytes in flight are bounded; the reader waits for room
 * before it allocates.
 *
 * <p>Its buffers ({@link ConnectionMemory}) are freed by its own thread when it ends, on every path:
 * disconnect, handshake failure, protocol error, reset, server shutdown, export closed.
 */
final class Connection implements Runnable {
    private static final Logger LOG = LoggerFactory.getLogger(Connection.class);
    /** Requests up to this size (without FUA) may run on the reader thread (nbdcopy sends 256 KiB, fio 1 MiB). */
    static final int INLINE_MAX_BYTES = 1024 * 1024;
    /** Quick requests run inline while their average service time stays below this. */
    static final long INLINE_MAX_NANOS = 30_000;

    private final long id;
    private final NbdServer server;
    private final NbdChannel channel;
    private final ConnectionMemory memory;
    private final NbdInput in;
    private final ReplyWriter out;
    private final NbdServer.Config config;
    private final ThreadFactory requestThreads;
    private final Semaphore slots;
    private final Semaphore budget;
    private final Deadlines deadlines;
    /** The export this connection counts against ({@link NbdServer#enterExport}), once in transmission. */
    private volatile String entered;
    private volatile Negotiated negotiated;
    private volatile boolean terminating;
    private final AtomicBoolean timedOut = new AtomicBoolean();
    private volatile Thread thread;
    /** Moving average of the service time of quick requests (racy updates are fine: it is a hint). */
    private volatile long quickNanos;

    /**
     * @throws OutOfMemoryError when the system has no memory left for its buffers (nothing stays allocated)
     */
    Connection(long id, NbdServer server, NbdChannel channel, NbdServer.Config config, ThreadFactory requestThreads) {
        this.id = id;
        this.server = server;
        this.channel = channel;
        this.memory = new ConnectionMemory(server.connectionMemoryCounter());
        this.deadlines = new Deadlines(config.handshakeTimeout(), config.requestTimeout(), config.replyTimeout());
        this.in = new NbdInput(channel, memory.input());
        this.out = new ReplyWriter(channel, memory.headers(), deadlines);
        this.config = config;
        this.requestThreads = requestThreads;
        this.slots = new Semaphore(config.maxRequestsInFlight());
        this.budget = new Semaphore(config.maxBytesInFlight());
    }

    /** Starts the connection thread; if that fails, frees the buffers and rethrows. */
    void start(ThreadFactory connectionThreads) {
        try {
            Thread t = connectionThreads.newThread(this);
            thread = t;
            t.start();
        } catch (RuntimeException | Error e) {
            thread = null;
            out.close();
            memory.close();
            throw e;
        }
    }

    /** The export name once in transmission, else null. */
    String exportName() {
        Negotiated n = negotiated;
        return n == null ? null : n.export().name();
    }

    boolean terminating() {
        return terminating;
    }

    /** Marks it as dropped by a timeout; true the first time only (the reaper logs and closes once). */
    boolean timeOut() {
        terminating = true;
        return timedOut.compareAndSet(false, true);
    }

    /** Its read and write deadlines, checked by the server's reaper. */
    Deadlines deadlines() {
        return deadlines;
    }

    /**
     * Ends the connection without waiting for the client: stops reading, lets requests that were
     * already received finish (those not yet started fail with ESHUTDOWN), then closes.
     */
    void terminate() {
        terminating = true;
        channel.shutdownInput();
    }

    /**
     * Closes the socket under a connection that did not end in time (a request stuck in the
     * device): the client sees the end of the stream at once; the stuck thread ends when the
     * device returns.
     */
    void forceClose() {
        try {
            channel.close();
        } catch (IOException e) {
            LOG.debug("{}: close failed: {}", this, e.toString());
        }
    }

    /** Waits for the connection thread to end; true if it did. */
    boolean awaitEnd(Duration timeout) throws InterruptedException {
        Thread t = thread;
        return t == null || t.join(timeout);
    }

    @Override
    public void run() {
        StatsCounters stats = null;
        long closesBeforeHandshake = server.exportCloseCount();
        try {
            deadlines.handshake();
            Negotiated n = new Handshake(in, out, channel, server.tls(), server.provider(), config.readOnly(),
                    server::isClosing, toString(), this::enter).run();
            deadlines.idle();
            if (n == null) {
                return;
            }
            stats = server.countersFor(n.export().name());
            stats.connections.increment();
            stats.activeConnections.increment();
            if (server.isClosing()) {
                terminating = true;
            } else if (server.exportClosedSince(n.export().name(), closesBeforeHandshake)) {
                // The export went away while this handshake held it open; closeExport's scan may have
                // missed this connection, which had not entered transmission yet.
                LOG.debug("{}: export {} was closed during the handshake; ending", this, n.export().name());
                terminate();
            }
            LOG.debug("{}: transmission on export {} (flags 0x{}, structured {}, {} contexts)", this, n.export().name(),
                    Integer.toHexString(n.transmissionFlags()), n.structuredReplies(), n.contexts().size());
            transmit(n, stats);
        } catch (NbdProtocolException e) {
            server.logs().protocolErrors.log("{}: protocol violation, disconnecting: {}", this, e.getMessage());
        } catch (Handshake.Refused e) {
            LOG.debug("{}: EXPORT_NAME refused, disconnecting: {}", this, e.getMessage());
        } catch (TlsRefusedException e) {
            server.logs().tlsRefused.log("{}: refused: {}", this, e.getMessage());
        } catch (EOFException | ClosedChannelException e) {
            LOG.debug("{}: closed by peer: {}", this, e.toString());
        } catch (IOException e) {
            if (terminating) {
                LOG.debug("{}: ended: {}", this, e.toString());
            } else {
                server.logs().failedConnections.log("{}: connection failed: {}", this, e.toString());
            }
        } catch (InterruptedException e) {
            LOG.debug("{}: interrupted", this);
        } catch (RuntimeException | Error e) {
            server.logs().unexpected.log("{}: connection failed unexpectedly", this, e);
        } finally {
            drain();
            try {
                out.flushBatch();
            } catch (IOException e) {
                LOG.debug("{}: last replies lost: {}", this, e.toString());
            }
            try {
                channel.close();
            } catch (IOException e) {
                LOG.debug("{}: close failed: {}", this, e.toString());
            }
            Negotiated n = negotiated;
            if (n != null) {
                try {
                    n.export().close();
                } catch (RuntimeException e) {
                    LOG.warn("{}: closing export {} failed", this, n.export().name(), e);
                }
            }
            if (stats != null) {
                stats.activeConnections.decrement();
            }
            String export = entered;
            if (export != null) {
                server.leaveExport(export);
            }
            out.close();
            try {
                memory.close();
            } catch (RuntimeException e) {
                LOG.error("{}: freeing the connection's buffers failed", this, e);
            }
            server.connectionEnded(this);
        }
    }

    /**
     * Called by the handshake right before the client learns that transmission starts: counts this
     * connection against its export's limit, or refuses it.
     */
    private void enter(Negotiated n) {
        String name = n.export().name();
        String refusal = server.enterExport(name);
        if (refusal != null) {
            server.logs().refused.log("{}: refused export {}: {}", this, name, refusal);
            throw new Handshake.Refused(refusal);
        }
        entered = name;
        negotiated = n;
    }

    private void transmit(Negotiated n, StatsCounters stats) throws IOException, InterruptedException {
        RequestHandler handler = new RequestHandler(this, n, out, server.pool(), stats, server.logs(),
                config.holeDetectionMinBytes(), server.largeReadPath().reader(channel.clientOnThisHost()));
        int maxPayload = n.sizes().maximumBytes();
        try {
            out.batchRepliesOf(Thread.currentThread(), memory.allocateBatch());
        } catch (OutOfMemoryError e) {
            // Batching only saves syscalls: serve without it rather than refuse.
            server.logs().memoryShortage.log("{}: no native memory for the reply batch, replies are not batched: {}",
                    this, e.getMessage());
        }
        in.beforeRead(out::flushBatch);
        in.onPartialInput(deadlines::requestStarted);
        while (true) {
            deadlines.idle();
            if (in.buffered() > 0) {
                deadlines.requestStarted(); // part of the next request is here: the rest is owed
            }
            ByteBuffer h;
            try {
                h = in.require(REQUEST_LENGTH);
            } catch (EOFException e) {
                if (in.buffered() != 0) {
                    LOG.debug("{}: stream ended inside a request header", this);
                }
                return;
            }
            int p = h.position();
            int magic = h.getInt(p + REQUEST_MAGIC_OFFSET);
            int flags = Short.toUnsignedInt(h.getShort(p + REQUEST_FLAGS_OFFSET));
            int type = Short.toUnsignedInt(h.getShort(p + REQUEST_TYPE_OFFSET));
            long cookie = h.getLong(p + REQUEST_COOKIE_OFFSET);
            long offset = h.getLong(p + REQUEST_OFFSET_OFFSET);
            long length = Integer.toUnsignedLong(h.getInt(p + REQUEST_LENGTH_OFFSET));
            h.position(p + REQUEST_LENGTH);
            if (magic != REQUEST_MAGIC) {
                throw new NbdProtocolException("bad request magic 0x" + Integer.toHexString(magic));
            }
            if (type == CMD_DISC) {
                LOG.debug("{}: client disconnects", this);
                return;
            }
            acquire(slots, 1);
            ByteBuffer payload = null;
            int held = 0;
            try {
                if (type == CMD_WRITE) {
                    if (length > maxPayload) {
                        // Stay in sync with the stream: consume the data without keeping it.
                        deadlines.requestStarted();
                        in.skip(length);
                        stats.requests.increment();
                        stats.errors.increment();
                        handler.replyError(cookie, EINVAL, "WRITE of " + length + " bytes exceeds the maximum payload of "
                                + maxPayload);
                        slots.release();
                        continue;
                    }
                    acquireBytes((int) length);
                    held = (int) length;
                    deadlines.requestStarted();
                    try {
                        payload = server.pool().acquire(held);
                    } catch (BufferPool.NoMemoryException e) {
                        releaseBytes(held);
                        held = 0;
                        in.skip(length); // stay in sync with the stream
                        stats.requests.increment();
                        stats.errors.increment();
                        server.logs().memoryShortage.log("{}: WRITE of {} bytes refused with ENOMEM: {}", this, length,
                                e.getMessage());
                        handler.replyError(cookie, ENOMEM, "WRITE of " + length + " bytes: " + e.getMessage());
                        slots.release();
                        continue;
                    }
                    in.readFully(payload);
                    payload.flip();
                } else if (type == CMD_READ && length <= maxPayload) {
                    acquireBytes((int) length);
                    held = (int) length;
                } else if (type == CMD_BLOCK_STATUS) {
                    int bytes = (int) Math.min(handler.blockStatusBufferBytes(flags),
                            Math.min(config.maxBytesInFlight(), config.maxServerBytesInFlight()));
                    acquireBytes(bytes);
                    held = bytes;
                }
            } catch (IOException | InterruptedException | RuntimeException e) {
                server.pool().release(payload);
                releaseBytes(held);
                slots.release();
                throw e;
            }
            deadlines.idle(); // all of it arrived; running it (even inline, in a slow device) owes nothing
            Request r = new Request(flags, type, cookie, offset, length, payload, held);
            if (quick(r)) {
                if (quickNanos < INLINE_MAX_NANOS || alone(r)) {
                    timed(handler, r);
                } else if (r.type() == CMD_READ && r.lengthBytes() <= SlowRequestThreads.MAX_BYTES) {
                    SlowRequestThreads.shared().start(() -> timed(handler, r));
                } else {
                    requestThreads.newThread(() -> timed(handler, r)).start();
                }
            } else {
                requestThreads.newThread(() -> handler.handle(r)).start();
            }
        }
    }

    /**
     * Whether the request just read is the only one in flight and no other has started to arrive: a
     * client at depth 1. Handing it to another thread would then only add wake-ups (two thread hops
     * in this VM cost more than the request itself: at depth 1, 4 KiB writes into ext4's page cache
     * ran at 0.6x nbdkit dispatched and 1.5x inline), and nothing waits behind it.
     * <p>
     * A WRITE whose payload is longer than the input buffer never counts as alone: its payload was
     * read from the socket past the buffer, in pieces of the client's send buffer (~208 KiB on a Unix
     * socket) while the client waited to send the rest, so an empty input buffer says nothing of what
     * follows, and running it inline would stop reading while a client at depth keeps waiting to send
     * (1 MiB writes at depth 8 on /dev/shm: 1,950 -> 2,191 MiB/s dispatched, 9 alternated rounds).
     */
    private boolean alone(Request r) {
        if (r.type() == CMD_WRITE && r.lengthBytes() > NbdInput.BUFFER_BYTES) {
            return false;
        }
        return in.buffered() == 0 && slots.availablePermits() == config.maxRequestsInFlight() - 1;
    }

    private void timed(RequestHandler handler, Request r) {
        long start = System.nanoTime();
        handler.handle(r);
        long q = quickNanos;
        quickNanos = q + ((System.nanoTime() - start) - q) / 8;
    }

    /**
     * Acquires permits, first sending batched replies if it has to wait (their clients may be what
     * we wait for). While it waits the client owes nothing: the read deadline is off.
     */
    private void acquire(Semaphore s, int permits) throws IOException, InterruptedException {
        if (!s.tryAcquire(permits, 0, TimeUnit.NANOSECONDS)) {
            deadlines.idle();
            out.flushBatch();
            s.acquire(permits);
        }
    }

    /** Takes {@code bytes} of this connection's in-flight budget, then of the server's. */
    private void acquireBytes(int bytes) throws IOException, InterruptedException {
        acquire(budget, bytes);
        try {
            acquire(server.bytesInFlight(), bytes);
        } catch (IOException | InterruptedException | RuntimeException e) {
            budget.release(bytes);
            throw e;
        }
    }

    private void releaseBytes(int bytes) {
        server.bytesInFlight().release(bytes);
        budget.release(bytes);
    }

    private static boolean quick(Request r) {
        return switch (r.type()) {
            case CMD_READ, CMD_WRITE -> r.lengthBytes() <= INLINE_MAX_BYTES && (r.flags() & CMD_FLAG_FUA) == 0;
            case CMD_BLOCK_STATUS, CMD_CACHE -> true;
            default -> false;
        };
    }

    /** Called by the handler when a request is finished (replied or failed). */
    void requestDone(Request r) {
        releaseBytes(r.budgetBytes());
        slots.release();
    }

    /** Waits until every request in flight has replied, at most the shutdown grace. */
    private void drain() {
        int all = config.maxRequestsInFlight();
        try {
            if (slots.tryAcquire(all, config.shutdownGrace().toMillis(), TimeUnit.MILLISECONDS)) {
                slots.release(all);
            } else {
                server.logs().abandonedRequests.log("{}: {} requests still running after {}; closing anyway", this,
                        all - slots.availablePermits(), config.shutdownGrace());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public String toString() {
        return "nbd#" + id + "(" + channel.describe() + ")";
    }
}
