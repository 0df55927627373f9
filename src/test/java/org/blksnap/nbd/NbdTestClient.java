package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.nbd.NbdHandshakeDescriptor.*;
import static org.blksnap.nbd.NbdTransmissionDescriptor.*;

import java.io.ByteArrayOutputStream;
import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;
import java.net.SocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.SocketChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A raw NBD client for tests: speaks the wire format byte by byte, so tests can send exactly
 * what they want (including garbage) and see exactly what the server answers. Uses the
 * server's descriptor constants for numbers; layouts are written out independently here.
 */
final class NbdTestClient implements AutoCloseable {
    record OptionReply(int option, int type, byte[] data) {
        String text() {
            return new String(data, StandardCharsets.UTF_8);
        }

        ByteBuffer buffer() {
            return ByteBuffer.wrap(data);
        }
    }

    /** A simple reply or one structured chunk. */
    record Reply(boolean simple, int flags, int type, long cookie, int error, byte[] payload) {
        boolean done() {
            return simple || (flags & REPLY_FLAG_DONE) != 0;
        }

        /** The error of a simple reply or of an error chunk, else 0. */
        int errorCode() {
            if (simple) {
                return error;
            }
            if (type == REPLY_TYPE_ERROR || type == REPLY_TYPE_ERROR_OFFSET) {
                return ByteBuffer.wrap(payload).getInt(0);
            }
            return 0;
        }

        String errorMessage() {
            if (simple || (type != REPLY_TYPE_ERROR && type != REPLY_TYPE_ERROR_OFFSET)) {
                return "";
            }
            ByteBuffer b = ByteBuffer.wrap(payload);
            int len = Short.toUnsignedInt(b.getShort(4));
            return new String(payload, 6, len, StandardCharsets.UTF_8);
        }
    }

    /** What GO told us. */
    record ExportData(long sizeBytes, int flags, int minBlock, int preferredBlock, int maxPayload,
                      Map<String, Integer> contexts) {
    }

    private final ReadableByteChannel in;
    private final WritableByteChannel out;
    private final Closeable closer;
    private final Map<Long, Integer> pendingSimpleReads = new ConcurrentHashMap<>();
    private final AtomicLong cookies = new AtomicLong(1000);
    boolean structured;

    NbdTestClient(ReadableByteChannel in, WritableByteChannel out, Closeable closer) {
        this.in = in;
        this.out = out;
        this.closer = closer;
    }

    static NbdTestClient connect(SocketAddress address) throws IOException {
        SocketChannel ch = SocketChannel.open(address);
        return new NbdTestClient(ch, ch, ch);
    }

    // ---- raw bytes

    void send(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            out.write(b);
        }
    }

    void send(byte[] b) throws IOException {
        send(ByteBuffer.wrap(b));
    }

    ByteBuffer readExactly(int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (in.read(b) < 0) {
                throw new EOFException("server closed with " + b.remaining() + " of " + n + " bytes missing");
            }
        }
        return b.flip();
    }

    /** Reads until end of stream; returns the bytes read before it. Throws if the stream stays open (socket timeout in the caller). */
    byte[] readToEnd() throws IOException {
        ByteArrayOutputStream all = new ByteArrayOutputStream();
        ByteBuffer b = ByteBuffer.allocate(4096);
        while (true) {
            b.clear();
            int n;
            try {
                n = in.read(b);
            } catch (IOException e) {
                return all.toByteArray(); // connection reset counts as closed
            }
            if (n < 0) {
                return all.toByteArray();
            }
            all.write(b.array(), 0, n);
        }
    }

    // ---- handshake

    int readGreeting() throws IOException {
        ByteBuffer g = readExactly(18);
        assertThat(g.getLong(0)).as("NBDMAGIC").isEqualTo(NBDMAGIC);
        assertThat(g.getLong(8)).as("IHAVEOPT").isEqualTo(IHAVEOPT);
        return Short.toUnsignedInt(g.getShort(16));
    }

    void sendClientFlags(int flags) throws IOException {
        send(ByteBuffer.allocate(4).putInt(0, flags));
    }

    /** Greeting + client flags FIXED_NEWSTYLE | NO_ZEROES. */
    void start() throws IOException {
        int flags = readGreeting();
        assertThat(flags).isEqualTo(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        sendClientFlags(CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES);
    }

    void sendOption(int option, byte[] data) throws IOException {
        ByteBuffer h = ByteBuffer.allocate(16 + data.length);
        h.putLong(IHAVEOPT).putInt(option).putInt(data.length).put(data);
        send(h.flip());
    }

    void sendOptionHeader(long magic, int option, int length) throws IOException {
        send(ByteBuffer.allocate(16).putLong(magic).putInt(option).putInt(length).flip());
    }

    OptionReply readOptionReply() throws IOException {
        ByteBuffer h = readExactly(20);
        assertThat(h.getLong(0)).as("option reply magic").isEqualTo(OPTION_REPLY_MAGIC);
        int length = h.getInt(16);
        assertThat(length).as("option reply length").isBetween(0, 1 << 20);
        return new OptionReply(h.getInt(8), h.getInt(12), readExactly(length).array());
    }

    /** Reads replies until the final one (ACK or an error), inclusive. */
    List<OptionReply> readOptionReplies() throws IOException {
        List<OptionReply> all = new ArrayList<>();
        while (true) {
            OptionReply r = readOptionReply();
            all.add(r);
            if (r.type() == REP_ACK || isError(r.type())) {
                return all;
            }
        }
    }

    List<OptionReply> option(int option, byte[] data) throws IOException {
        sendOption(option, data);
        return readOptionReplies();
    }

    static byte[] infoRequest(String name, int... infos) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + n.length + 2 + 2 * infos.length);
        b.putInt(n.length).put(n).putShort((short) infos.length);
        for (int i : infos) {
            b.putShort((short) i);
        }
        return b.array();
    }

    static byte[] metaRequest(String name, String... queries) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        o.writeBytes(ByteBuffer.allocate(4).putInt(n.length).array());
        o.writeBytes(n);
        o.writeBytes(ByteBuffer.allocate(4).putInt(queries.length).array());
        for (String q : queries) {
            byte[] qb = q.getBytes(StandardCharsets.UTF_8);
            o.writeBytes(ByteBuffer.allocate(4).putInt(qb.length).array());
            o.writeBytes(qb);
        }
        return o.toByteArray();
    }

    /** Full handshake to transmission: [STRUCTURED_REPLY], [SET_META_CONTEXT], GO. */
    ExportData go(String name, boolean structuredReplies, String... contexts) throws IOException {
        start();
        return negotiate(name, structuredReplies, contexts);
    }

    /** As {@link #go} on a connection already past the greeting. */
    ExportData negotiate(String name, boolean structuredReplies, String... contexts) throws IOException {
        if (structuredReplies) {
            assertThat(option(OPT_STRUCTURED_REPLY, new byte[0])).extracting(OptionReply::type).containsExactly(REP_ACK);
            structured = true;
        }
        Map<String, Integer> ids = new LinkedHashMap<>();
        if (contexts.length > 0) {
            for (OptionReply r : option(OPT_SET_META_CONTEXT, metaRequest(name, contexts))) {
                if (r.type() == REP_META_CONTEXT) {
                    ByteBuffer b = r.buffer();
                    ids.put(new String(r.data(), 4, r.data().length - 4, StandardCharsets.UTF_8), b.getInt(0));
                } else {
                    assertThat(r.type()).as(r.text()).isEqualTo(REP_ACK);
                }
            }
        }
        List<OptionReply> replies = option(OPT_GO, infoRequest(name, INFO_BLOCK_SIZE));
        OptionReply last = replies.get(replies.size() - 1);
        assertThat(last.type()).as("GO %s: %s", name, last.text()).isEqualTo(REP_ACK);
        long size = -1;
        int flags = -1;
        int[] bs = new int[3];
        for (OptionReply r : replies) {
            if (r.type() == REP_INFO) {
                ByteBuffer b = r.buffer();
                switch (b.getShort(0)) {
                    case INFO_EXPORT -> {
                        size = b.getLong(2);
                        flags = Short.toUnsignedInt(b.getShort(10));
                    }
                    case INFO_BLOCK_SIZE -> {
                        bs[0] = b.getInt(2);
                        bs[1] = b.getInt(6);
                        bs[2] = b.getInt(10);
                    }
                    default -> {
                    }
                }
            }
        }
        return new ExportData(size, flags, bs[0], bs[1], bs[2], ids);
    }

    // ---- transmission

    long nextCookie() {
        return cookies.incrementAndGet();
    }

    void request(int flags, int type, long cookie, long offset, long length) throws IOException {
        if (type == CMD_READ && !structured) {
            pendingSimpleReads.put(cookie, (int) length);
        }
        ByteBuffer b = ByteBuffer.allocate(28);
        b.putInt(REQUEST_MAGIC).putShort((short) flags).putShort((short) type).putLong(cookie).putLong(offset)
                .putInt((int) length);
        send(b.flip());
    }

    void writeRequest(int flags, long cookie, long offset, byte[] data) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(28 + data.length);
        b.putInt(REQUEST_MAGIC).putShort((short) flags).putShort((short) CMD_WRITE).putLong(cookie).putLong(offset)
                .putInt(data.length).put(data);
        send(b.flip());
    }

    Reply readReply() throws IOException {
        ByteBuffer m = readExactly(4);
        int magic = m.getInt(0);
        if (magic == SIMPLE_REPLY_MAGIC) {
            ByteBuffer h = readExactly(12);
            int error = h.getInt(0);
            long cookie = h.getLong(4);
            Integer len = pendingSimpleReads.remove(cookie);
            byte[] data = error == 0 && len != null ? readExactly(len).array() : new byte[0];
            return new Reply(true, 0, 0, cookie, error, data);
        }
        assertThat(magic).as("reply magic").isEqualTo(STRUCTURED_REPLY_MAGIC);
        ByteBuffer h = readExactly(16);
        int flags = Short.toUnsignedInt(h.getShort(0));
        int type = Short.toUnsignedInt(h.getShort(2));
        long cookie = h.getLong(4);
        int length = h.getInt(12);
        assertThat(length).as("chunk length").isBetween(0, 64 << 20);
        return new Reply(false, flags, type, cookie, 0, readExactly(length).array());
    }

    /** All replies (chunks) of one request, up to the one marked DONE. */
    List<Reply> readAllReplies(long cookie) throws IOException {
        List<Reply> all = new ArrayList<>();
        while (true) {
            Reply r = readReply();
            assertThat(r.cookie()).as("cookie").isEqualTo(cookie);
            all.add(r);
            if (r.done()) {
                return all;
            }
        }
    }

    /** Sends a command without payload and returns its error (0 = success). */
    int command(int type, int flags, long offset, long length) throws IOException {
        long c = nextCookie();
        request(flags, type, c, offset, length);
        List<Reply> replies = readAllReplies(c);
        return replies.get(replies.size() - 1).errorCode();
    }

    int write(long offset, byte[] data, int flags) throws IOException {
        long c = nextCookie();
        writeRequest(flags, c, offset, data);
        List<Reply> replies = readAllReplies(c);
        return replies.get(replies.size() - 1).errorCode();
    }

    /** Reads and assembles a range (OFFSET_DATA and OFFSET_HOLE chunks, or simple data); fails on an error reply. */
    byte[] read(long offset, int length, int flags) throws IOException {
        long c = nextCookie();
        request(flags, CMD_READ, c, offset, length);
        byte[] result = new byte[length];
        long covered = 0;
        for (Reply r : readAllReplies(c)) {
            assertThat(r.errorCode()).as("read error %s", r.errorMessage()).isZero();
            if (r.simple()) {
                return r.payload();
            }
            ByteBuffer p = ByteBuffer.wrap(r.payload());
            if (r.type() == REPLY_TYPE_OFFSET_DATA) {
                long at = p.getLong(0) - offset;
                System.arraycopy(r.payload(), 8, result, (int) at, r.payload().length - 8);
                covered += r.payload().length - 8;
            } else if (r.type() == REPLY_TYPE_OFFSET_HOLE) {
                covered += Integer.toUnsignedLong(p.getInt(8));
            }
        }
        assertThat(covered).as("bytes covered by chunks").isEqualTo(length);
        return result;
    }

    byte[] read(long offset, int length) throws IOException {
        return read(offset, length, 0);
    }

    /** BLOCK_STATUS: context id -> list of {length, flags}. */
    Map<Integer, List<long[]>> blockStatus(long offset, long length, int flags) throws IOException {
        long c = nextCookie();
        request(flags, CMD_BLOCK_STATUS, c, offset, length);
        Map<Integer, List<long[]>> result = new LinkedHashMap<>();
        for (Reply r : readAllReplies(c)) {
            assertThat(r.errorCode()).as("block status error %s", r.errorMessage()).isZero();
            assertThat(r.type()).isEqualTo(REPLY_TYPE_BLOCK_STATUS);
            ByteBuffer p = ByteBuffer.wrap(r.payload());
            int id = p.getInt(0);
            List<long[]> extents = new ArrayList<>();
            for (int at = 4; at < r.payload().length; at += 8) {
                extents.add(new long[] {Integer.toUnsignedLong(p.getInt(at)), Integer.toUnsignedLong(p.getInt(at + 4))});
            }
            result.put(id, extents);
        }
        return result;
    }

    void disconnect() throws IOException {
        request(0, CMD_DISC, nextCookie(), 0, 0);
    }

    @Override
    public void close() throws IOException {
        closer.close();
    }
}
