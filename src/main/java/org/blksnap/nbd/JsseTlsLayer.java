package org.blksnap.nbd;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.util.concurrent.locks.ReentrantLock;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;
import javax.security.auth.x500.X500Principal;

/**
 * X.509 TLS over a connection's byte stream after {@code NBD_OPT_STARTTLS}: a JSSE {@link SSLEngine}
 * between the socket and the connection's reads and writes (pre-shared keys: {@link PskTlsLayer}).
 *
 * <p>Threads: reads come from one thread at a time (the connection's reader, or the platform
 * thread it hands a large payload read to); writes are serialized by a lock of this class, which
 * a read also takes when the engine must answer a post-handshake message (a TLS 1.3 KeyUpdate).
 * {@link SSLEngine} allows {@code wrap} and {@code unwrap} to run concurrently.
 *
 * <p>Memory: three heap buffers per connection (about 16 KiB each for received records and their
 * plaintext, 4 records' worth for outgoing ones), freed with the connection by the GC; plaintext
 * is unwrapped straight into the caller's buffer when it has room for a whole record, so a large
 * WRITE payload is not copied twice.
 */
final class JsseTlsLayer implements TlsLayer {
    /** Outgoing records gathered into one socket write. */
    private static final int RECORDS_PER_WRITE = 4;

    private final SSLEngine engine;
    private final ByteChannel raw;
    private final ReentrantLock writeLock = new ReentrantLock();
    /** Received records not unwrapped yet, between position and limit. Reader only. */
    private ByteBuffer netIn;
    /** Plaintext unwrapped but not handed out yet, between position and limit. Reader only. */
    private ByteBuffer appIn;
    /** Outgoing records; guarded by {@link #writeLock}. */
    private ByteBuffer netOut;
    private boolean inboundDone;

    /**
     * @param received bytes already read from the stream after the STARTTLS reply (a client that sent its
     *                 ClientHello without waiting); copied
     */
    JsseTlsLayer(SSLEngine engine, ByteChannel raw, ByteBuffer received) {
        this.engine = engine;
        this.raw = raw;
        SSLSession s = engine.getSession();
        this.netIn = ByteBuffer.allocate(Math.max(s.getPacketBufferSize(), received.remaining()));
        this.netIn.put(received).flip();
        this.appIn = ByteBuffer.allocate(s.getApplicationBufferSize()).flip();
        this.netOut = ByteBuffer.allocate(RECORDS_PER_WRITE * s.getPacketBufferSize());
    }

    @Override
    public void handshake() throws IOException {
        engine.beginHandshake();
        while (true) {
            switch (engine.getHandshakeStatus()) {
                case NEED_UNWRAP, NEED_UNWRAP_AGAIN -> {
                    if (inboundDone) {
                        throw new EOFException("the client ended the TLS session during its handshake");
                    }
                    if (!unwrapOnce(appIn.compact())) {
                        appIn.flip();
                        if (!fill()) {
                            throw new EOFException("the client closed the connection during the TLS handshake");
                        }
                    } else {
                        appIn.flip();
                    }
                }
                case NEED_WRAP -> wrapHandshake();
                case NEED_TASK -> runTasks();
                case FINISHED, NOT_HANDSHAKING -> {
                    return;
                }
            }
        }
    }

    @Override
    public X500Principal peerSubject() {
        try {
            if (engine.getSession().getPeerPrincipal() instanceof X500Principal p) {
                return p;
            }
        } catch (SSLPeerUnverifiedException e) {
            // no client certificate: no subject
        }
        return null;
    }

    @Override
    public String pskIdentity() {
        return null;
    }

    @Override
    public String describe() {
        SSLSession s = engine.getSession();
        return s.getProtocol() + " " + s.getCipherSuite();
    }

    @Override
    public int read(ByteBuffer dst) throws IOException {
        while (true) {
            if (appIn.hasRemaining()) {
                int n = Math.min(appIn.remaining(), dst.remaining());
                dst.put(dst.position(), appIn, appIn.position(), n);
                dst.position(dst.position() + n);
                appIn.position(appIn.position() + n);
                return n;
            }
            if (inboundDone) {
                return -1;
            }
            if (!dst.hasRemaining()) {
                return 0;
            }
            if (netIn.hasRemaining()) {
                boolean direct = dst.remaining() >= engine.getSession().getApplicationBufferSize();
                int before = dst.position();
                boolean progressed;
                if (direct) {
                    progressed = unwrapOnce(dst);
                } else {
                    progressed = unwrapOnce(appIn.compact());
                    appIn.flip();
                }
                afterUnwrap();
                if (direct && dst.position() > before) {
                    return dst.position() - before;
                }
                if (progressed) {
                    continue;
                }
            }
            if (!fill()) {
                inboundDone = true;
            }
        }
    }

    /**
     * Unwraps one record into {@code dst} (in write mode). Returns false when a whole record has not arrived yet.
     */
    private boolean unwrapOnce(ByteBuffer dst) throws IOException {
        while (true) {
            SSLEngineResult r = engine.unwrap(netIn, dst);
            switch (r.getStatus()) {
                case OK -> {
                    return true;
                }
                case CLOSED -> {
                    inboundDone = true;
                    return true;
                }
                case BUFFER_UNDERFLOW -> {
                    int need = engine.getSession().getPacketBufferSize();
                    if (netIn.capacity() < need) {
                        netIn = ByteBuffer.allocate(need).put(netIn).flip();
                    }
                    return false;
                }
                case BUFFER_OVERFLOW -> {
                    if (dst != appIn) {
                        throw new SSLException("TLS record larger than the application buffer");
                    }
                    // The session allows larger records than assumed: grow (appIn is in write mode here).
                    ByteBuffer bigger = ByteBuffer.allocate(engine.getSession().getApplicationBufferSize() + dst.position());
                    appIn = bigger.put(dst.flip());
                    dst = appIn;
                }
            }
        }
    }

    /** Runs what a post-handshake message (KeyUpdate, a new ticket) asks for. */
    private void afterUnwrap() throws IOException {
        while (true) {
            switch (engine.getHandshakeStatus()) {
                case NEED_TASK -> runTasks();
                case NEED_WRAP -> wrapHandshake();
                default -> {
                    return;
                }
            }
        }
    }

    /** Reads more records from the socket; false at its end. */
    private boolean fill() throws IOException {
        netIn.compact();
        try {
            if (!netIn.hasRemaining()) {
                netIn = ByteBuffer.allocate(netIn.capacity() * 2).put(netIn.flip());
            }
            return raw.read(netIn) >= 0;
        } finally {
            netIn.flip();
        }
    }

    private void runTasks() {
        Runnable task;
        while ((task = engine.getDelegatedTask()) != null) {
            task.run();
        }
    }

    private void wrapHandshake() throws IOException {
        writeLock.lock();
        try {
            netOut.clear();
            SSLEngineResult r = engine.wrap(ByteBuffer.allocate(0), netOut);
            if (r.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
                netOut = ByteBuffer.allocate(netOut.capacity() * 2);
                return; // the engine still needs to wrap; the caller's loop comes back
            }
            flushOut();
            if (r.getStatus() == SSLEngineResult.Status.CLOSED && r.bytesProduced() == 0) {
                throw new EOFException("TLS session closed");
            }
        } finally {
            writeLock.unlock();
        }
    }

    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
        writeLock.lock();
        try {
            long consumed = 0;
            long left = remaining(srcs, offset, length);
            int packet = engine.getSession().getPacketBufferSize();
            while (left > 0) {
                netOut.clear();
                do {
                    SSLEngineResult r = engine.wrap(srcs, offset, length, netOut);
                    if (r.getStatus() == SSLEngineResult.Status.CLOSED) {
                        throw new SSLException("TLS session to the client is closed");
                    }
                    if (r.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
                        if (netOut.position() == 0) {
                            netOut = ByteBuffer.allocate(netOut.capacity() * 2);
                            continue;
                        }
                        break;
                    }
                    if (r.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_TASK) {
                        runTasks();
                    }
                    consumed += r.bytesConsumed();
                    left -= r.bytesConsumed();
                } while (left > 0 && netOut.remaining() >= packet);
                flushOut();
            }
            return consumed;
        } finally {
            writeLock.unlock();
        }
    }

    private void flushOut() throws IOException {
        netOut.flip();
        while (netOut.hasRemaining()) {
            raw.write(netOut);
        }
        netOut.clear();
    }

    private static long remaining(ByteBuffer[] srcs, int offset, int length) {
        long n = 0;
        for (int i = offset; i < offset + length; i++) {
            n += srcs[i].remaining();
        }
        return n;
    }

    @Override
    public void closeQuietly() {
        if (!writeLock.tryLock()) {
            return;
        }
        try {
            engine.closeOutbound();
            ByteBuffer notify = ByteBuffer.allocate(engine.getSession().getPacketBufferSize());
            engine.wrap(ByteBuffer.allocate(0), notify);
            notify.flip();
            if (!notify.hasRemaining()) {
                return;
            }
            TlsLayer.sendLastWords(raw, notify);
        } catch (IOException | RuntimeException e) {
            // The connection is being closed anyway.
        } finally {
            writeLock.unlock();
        }
    }
}
