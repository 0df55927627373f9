package org.blksnap.backup;

import static org.blksnap.backup.NbdClientDescriptor.*;

import java.io.EOFException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.UnixDomainSocketAddress;
import java.net.URLDecoder;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A small NBD client for one export: fixed newstyle handshake with {@code NBD_OPT_GO}, then reads
 * and writes with simple replies. Any number of threads may call {@link #read}/{@link #write} at
 * once: each request is sent whole under a lock and its reply is matched by cookie by one reader
 * thread, so several requests are in flight. Errors are {@link RepositoryException.Code#NBD}
 * naming the URI, offset and length; after a transport error every pending and later request fails.
 */
final class NbdClient implements ImageReader {
    private final String uri;
    private final SocketChannel ch;
    private final long sizeBytes;
    private final int transmissionFlags;
    private final ReentrantLock sendLock = new ReentrantLock();
    /** Guarded by sendLock. */
    private final ByteBuffer sendBuffer = ByteBuffer.allocateDirect(REQUEST_BYTES + MAX_REQUEST_BYTES);
    private final ConcurrentHashMap<Long, Pending> pending = new ConcurrentHashMap<>();
    private final AtomicLong cookies = new AtomicLong();
    private final Thread reader;
    private volatile IOException broken;

    private record Pending(ByteBuffer into, CompletableFuture<Integer> done) {
    }

    private NbdClient(String uri, SocketChannel ch, long sizeBytes, int transmissionFlags) {
        this.uri = uri;
        this.ch = ch;
        this.sizeBytes = sizeBytes;
        this.transmissionFlags = transmissionFlags;
        this.reader = Thread.ofVirtual().name("nbd-client-reader").start(this::readReplies);
    }

    /** True for the URIs this client connects to: {@code nbd://HOST[:PORT]/NAME}, {@code nbd+unix:///NAME?socket=PATH}. */
    static boolean isNbdUri(String s) {
        return s.startsWith("nbd://") || s.startsWith("nbd+unix://");
    }

    /** Connects and negotiates the export the URI names. */
    static NbdClient connect(String uriText) throws RepositoryException {
        SocketChannel ch = null;
        try {
            URI u = new URI(uriText);
            String name = u.getPath() == null || u.getPath().isEmpty() ? "" : u.getPath().substring(1);
            if ("nbd".equals(u.getScheme())) {
                ch = SocketChannel.open(new InetSocketAddress(u.getHost(), u.getPort() < 0 ? 10809 : u.getPort()));
                ch.setOption(StandardSocketOptions.TCP_NODELAY, true);
            } else if ("nbd+unix".equals(u.getScheme())) {
                String socket = null;
                for (String kv : (u.getRawQuery() == null ? "" : u.getRawQuery()).split("&")) {
                    if (kv.startsWith("socket=")) {
                        socket = URLDecoder.decode(kv.substring(7), StandardCharsets.UTF_8);
                    }
                }
                if (socket == null) {
                    throw new RepositoryException(RepositoryException.Code.NBD, uriText + ": an nbd+unix URI needs ?socket=PATH");
                }
                ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                ch.connect(UnixDomainSocketAddress.of(socket));
            } else {
                throw new RepositoryException(RepositoryException.Code.NBD, uriText + " is not an nbd:// or nbd+unix:// URI");
            }
            long[] export = handshake(ch, uriText, name);
            return new NbdClient(uriText, ch, export[0], (int) export[1]);
        } catch (URISyntaxException e) {
            throw new RepositoryException(RepositoryException.Code.NBD, "malformed NBD URI " + uriText + ": " + e.getMessage());
        } catch (IOException e) {
            closeQuietly(ch);
            throw new RepositoryException(RepositoryException.Code.NBD, "cannot connect to " + uriText + ": " + e.getMessage(), e);
        } catch (RepositoryException e) {
            closeQuietly(ch);
            throw e;
        }
    }

    /** Returns {size, transmission flags}. */
    private static long[] handshake(SocketChannel ch, String uri, String name) throws IOException, RepositoryException {
        ByteBuffer greeting = readFully(ch, GREETING_BYTES);
        if (greeting.getLong() != NBDMAGIC || greeting.getLong() != IHAVEOPT) {
            throw new RepositoryException(RepositoryException.Code.NBD, uri + " is not a fixed-newstyle NBD server");
        }
        int serverFlags = greeting.getShort() & 0xffff;
        if ((serverFlags & FLAG_FIXED_NEWSTYLE) == 0) {
            throw new RepositoryException(RepositoryException.Code.NBD, uri + " does not offer fixed newstyle");
        }
        byte[] nameBytes = name.getBytes(StandardCharsets.UTF_8);
        ByteBuffer out = ByteBuffer.allocate(4 + 16 + 4 + nameBytes.length + 2);
        out.putInt(FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES));
        out.putLong(IHAVEOPT).putInt(OPT_GO).putInt(4 + nameBytes.length + 2);
        out.putInt(nameBytes.length).put(nameBytes).putShort((short) 0).flip();
        writeFully(ch, out);
        long size = -1;
        int flags = 0;
        while (true) {
            ByteBuffer h = readFully(ch, OPTION_REPLY_HEADER_BYTES);
            if (h.getLong() != OPTION_REPLY_MAGIC) {
                throw new RepositoryException(RepositoryException.Code.NBD, uri + ": bad option reply magic");
            }
            h.getInt();
            int type = h.getInt();
            int length = h.getInt();
            if (length < 0 || length > MAX_OPTION_REPLY_BYTES) {
                throw new RepositoryException(RepositoryException.Code.NBD, uri + ": option reply of " + length + " bytes");
            }
            ByteBuffer data = readFully(ch, length);
            if ((type & REP_FLAG_ERROR) != 0) {
                throw new RepositoryException(RepositoryException.Code.NBD, uri + ": the server refused export '" + name
                        + "': " + StandardCharsets.UTF_8.decode(data));
            }
            if (type == REP_INFO && length >= 12 && data.getShort(0) == INFO_EXPORT) {
                size = data.getLong(2);
                flags = data.getShort(10) & 0xffff;
            } else if (type == REP_ACK) {
                break;
            }
        }
        if (size < 0) {
            throw new RepositoryException(RepositoryException.Code.NBD, uri + ": no export size in the handshake");
        }
        return new long[] {size, flags};
    }

    /** The export's size in bytes. */
    @Override
    public long sizeBytes() {
        return sizeBytes;
    }

    boolean canWriteZeroes() {
        return (transmissionFlags & TFLAG_SEND_WRITE_ZEROES) != 0;
    }

    boolean readOnly() {
        return (transmissionFlags & TFLAG_READ_ONLY) != 0;
    }

    /** Reads {@code dst.remaining()} bytes at {@code offsetBytes} into {@code dst} (at most {@link NbdClientDescriptor#MAX_REQUEST_BYTES}). */
    @Override
    public void read(long offsetBytes, ByteBuffer dst) throws RepositoryException {
        request(CMD_READ, offsetBytes, dst.remaining(), null, dst);
    }

    /** Writes {@code src}'s remaining bytes at {@code offsetBytes}. */
    void write(long offsetBytes, ByteBuffer src) throws RepositoryException {
        request(CMD_WRITE, offsetBytes, src.remaining(), src, null);
    }

    /** Writes {@code lengthBytes} zeros at {@code offsetBytes} (the server must support it: {@link #canWriteZeroes}). */
    void writeZeroes(long offsetBytes, int lengthBytes) throws RepositoryException {
        request(CMD_WRITE_ZEROES, offsetBytes, lengthBytes, null, null);
    }

    /** Makes every write replied to durable, if the server supports flush. */
    void flush() throws RepositoryException {
        if ((transmissionFlags & TFLAG_SEND_FLUSH) != 0) {
            request(CMD_FLUSH, 0, 0, null, null);
        }
    }

    private void request(int type, long offsetBytes, int length, ByteBuffer payload, ByteBuffer into)
            throws RepositoryException {
        if (length < 0 || length > MAX_REQUEST_BYTES) {
            throw new IllegalArgumentException("length (" + length + ") must be within 0.." + MAX_REQUEST_BYTES);
        }
        String what = switch (type) {
            case CMD_READ -> "read";
            case CMD_WRITE -> "write";
            case CMD_WRITE_ZEROES -> "write zeroes";
            default -> "flush";
        };
        long cookie = cookies.incrementAndGet();
        Pending p = new Pending(into, new CompletableFuture<>());
        pending.put(cookie, p);
        sendLock.lock();
        try {
            if (broken != null) {
                throw broken;
            }
            // header and payload in one buffer: one write per request instead of two
            ByteBuffer out = sendBuffer.clear();
            out.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) type).putLong(cookie).putLong(offsetBytes)
                    .putInt(length);
            if (payload != null) {
                out.put(payload.duplicate());
            }
            writeFully(ch, out.flip());
        } catch (IOException e) {
            pending.remove(cookie);
            throw new RepositoryException(RepositoryException.Code.NBD, what + " of " + length + " bytes at offset "
                    + offsetBytes + " of " + uri + " failed: " + e.getMessage(), e);
        } finally {
            sendLock.unlock();
        }
        int error;
        try {
            error = p.done().get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RepositoryException(RepositoryException.Code.NBD, what + " at offset " + offsetBytes + " of " + uri
                    + " interrupted", e);
        } catch (ExecutionException e) {
            throw new RepositoryException(RepositoryException.Code.NBD, what + " of " + length + " bytes at offset "
                    + offsetBytes + " of " + uri + " failed: " + e.getCause().getMessage(), e.getCause());
        }
        if (error != 0) {
            throw new RepositoryException(RepositoryException.Code.NBD, what + " of " + length + " bytes at offset "
                    + offsetBytes + " of " + uri + ": the server answered error " + error);
        }
    }

    private void readReplies() {
        // Buffers of our own, allocated once for the life of the connection.
        ByteBuffer h = ByteBuffer.allocateDirect(SIMPLE_REPLY_BYTES);
        ByteBuffer payload = ByteBuffer.allocateDirect(MAX_REQUEST_BYTES);
        try {
            while (true) {
                h.clear();
                readFully(ch, h);
                int magic = h.getInt();
                int error = h.getInt();
                long cookie = h.getLong();
                if (magic != SIMPLE_REPLY_MAGIC) {
                    throw new IOException("reply magic 0x" + Integer.toHexString(magic) + " is not a simple reply's");
                }
                Pending p = pending.remove(cookie);
                if (p == null) {
                    throw new IOException("reply to cookie " + cookie + ", which no request has");
                }
                if (error == 0 && p.into() != null) {
                    ByteBuffer into = p.into();
                    payload.clear().limit(into.remaining());
                    readFully(ch, payload);
                    into.put(payload);
                }
                p.done().complete(error);
            }
        } catch (IOException e) {
            broken = e;
            pending.values().forEach(p -> p.done().completeExceptionally(e));
            pending.clear();
        }
    }

    private static ByteBuffer readFully(SocketChannel ch, int length) throws IOException {
        return readFully(ch, ByteBuffer.allocate(length));
    }

    /** Fills {@code b} and flips it. */
    private static ByteBuffer readFully(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new EOFException("the server closed the connection");
            }
        }
        return b.flip();
    }

    private static void writeFully(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    private static void closeQuietly(SocketChannel ch) {
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException e) {
                // closing a failed connection
            }
        }
    }

    /** Sends NBD_CMD_DISC and closes the connection. */
    @Override
    public void close() {
        sendLock.lock();
        try {
            if (broken == null) {
                ByteBuffer disc = ByteBuffer.allocate(REQUEST_BYTES);
                disc.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) CMD_DISC).putLong(0).putLong(0).putInt(0).flip();
                writeFully(ch, disc);
            }
        } catch (IOException e) {
            // the server is gone already
        } finally {
            sendLock.unlock();
            closeQuietly(ch);
        }
        try {
            reader.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
