package org.blksnap.testing;

import java.io.EOFException;
import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * The smallest NBD client the reliability tests need, over a Unix socket: fixed newstyle handshake
 * with {@code NBD_OPT_EXPORT_NAME} (no structured replies), then READ, WRITE (optionally FUA) and
 * FLUSH, one request at a time, simple replies. A test knows exactly which of its requests were
 * acknowledged: a method that returns normally was; one that throws was not (the connection is then
 * unusable). Not thread-safe: one connection per thread.
 */
public final class NbdTestClient implements AutoCloseable {
    private static final long NBDMAGIC = 0x4e42444d41474943L;
    private static final long IHAVEOPT = 0x49484156454F5054L;
    private static final int REQUEST_MAGIC = 0x25609513;
    private static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    private static final int OPT_EXPORT_NAME = 1;
    private static final int CLIENT_FIXED_NEWSTYLE_NO_ZEROES = 3;
    private static final int FLAG_SEND_FUA = 1 << 3;
    private static final short CMD_READ = 0;
    private static final short CMD_WRITE = 1;
    private static final short CMD_FLUSH = 3;
    private static final short CMD_FLAG_FUA = 1;

    private final SocketChannel ch;
    private final long sizeBytes;
    private final boolean fuaAllowed;
    private final ByteBuffer header = ByteBuffer.allocate(28);
    private long cookie;

    private NbdTestClient(SocketChannel ch, long sizeBytes, boolean fuaAllowed) {
        this.ch = ch;
        this.sizeBytes = sizeBytes;
        this.fuaAllowed = fuaAllowed;
    }

    /** Connects to {@code export} on the NBD Unix socket {@code socket}. */
    public static NbdTestClient connect(Path socket, String export) throws IOException {
        SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(socket));
        try {
            ByteBuffer hello = read(ch, 18);
            if (hello.getLong(0) != NBDMAGIC || hello.getLong(8) != IHAVEOPT) {
                throw new IOException("not an NBD newstyle server on " + socket);
            }
            byte[] name = export.getBytes(StandardCharsets.UTF_8);
            ByteBuffer opt = ByteBuffer.allocate(4 + 16 + name.length);
            opt.putInt(CLIENT_FIXED_NEWSTYLE_NO_ZEROES).putLong(IHAVEOPT).putInt(OPT_EXPORT_NAME).putInt(name.length)
                    .put(name).flip();
            writeAll(ch, opt);
            ByteBuffer reply = read(ch, 10);
            return new NbdTestClient(ch, reply.getLong(0), (reply.getShort(8) & FLAG_SEND_FUA) != 0);
        } catch (IOException e) {
            ch.close();
            throw e;
        }
    }

    /** The export's size in bytes. */
    public long sizeBytes() {
        return sizeBytes;
    }

    /** Reads {@code lengthBytes} at {@code offsetBytes}; returns them in a buffer ready to read. */
    public ByteBuffer read(long offsetBytes, int lengthBytes) throws IOException {
        request(CMD_READ, (short) 0, offsetBytes, lengthBytes);
        reply("read", offsetBytes, lengthBytes);
        return read(ch, lengthBytes);
    }

    /** Writes the remaining bytes of {@code data} at {@code offsetBytes}, with FUA if asked and offered. */
    public void write(long offsetBytes, ByteBuffer data, boolean fua) throws IOException {
        int length = data.remaining();
        request(CMD_WRITE, fua && fuaAllowed ? CMD_FLAG_FUA : 0, offsetBytes, length);
        writeAll(ch, data);
        reply("write", offsetBytes, length);
    }

    /** Whether the server offered FUA (a write asked with FUA is otherwise sent without it). */
    public boolean fuaOffered() {
        return fuaAllowed;
    }

    /** NBD_CMD_FLUSH: every write acknowledged before it is durable once it returns. */
    public void flush() throws IOException {
        request(CMD_FLUSH, (short) 0, 0, 0);
        reply("flush", 0, 0);
    }

    private void request(short command, short flags, long offsetBytes, int lengthBytes) throws IOException {
        header.clear();
        header.putInt(REQUEST_MAGIC).putShort(flags).putShort(command).putLong(++cookie).putLong(offsetBytes)
                .putInt(lengthBytes).flip();
        writeAll(ch, header);
    }

    private void reply(String what, long offsetBytes, int lengthBytes) throws IOException {
        ByteBuffer r = read(ch, 16);
        if (r.getInt(0) != SIMPLE_REPLY_MAGIC || r.getLong(8) != cookie) {
            throw new IOException("unexpected reply to " + what + " at " + offsetBytes + "+" + lengthBytes);
        }
        if (r.getInt(4) != 0) {
            throw new IOException("NBD error " + r.getInt(4) + " for " + what + " at " + offsetBytes + "+" + lengthBytes);
        }
    }

    private static ByteBuffer read(SocketChannel ch, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new EOFException("server closed the connection");
            }
        }
        return b.flip();
    }

    private static void writeAll(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    @Override
    public void close() throws IOException {
        ch.close();
    }
}
