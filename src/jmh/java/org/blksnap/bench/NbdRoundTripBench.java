package org.blksnap.bench;

import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.blksnap.engine.BlockDevice;
import org.blksnap.nbd.Export;
import org.blksnap.nbd.ExportInfo;
import org.blksnap.nbd.ExportProvider;
import org.blksnap.nbd.NbdServer;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * NBD request decode, dispatch and reply encode, end to end: an in-process {@link NbdServer} over
 * an in-memory export on a Unix socket, driven by a minimal client (EXPORT_NAME handshake, simple
 * replies). The codec classes are package-private, so this measures them the way a client sees
 * them: per-request server overhead plus two socket hops. Compare with fio's nbd engine against
 * blksnapd (bench/run.sh), which adds fio/libnbd costs on the client side.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class NbdRoundTripBench {
    // Client side of the wire layout (see docs/nbd.md / NbdTransmissionDescriptor).
    private static final long NBDMAGIC = 0x4e42444d41474943L;
    private static final long IHAVEOPT = 0x49484156454F5054L;
    private static final int FLAG_FIXED_NEWSTYLE = 1;
    private static final int FLAG_NO_ZEROES = 2;
    private static final int OPT_EXPORT_NAME = 1;
    private static final int REQUEST_MAGIC = 0x25609513;
    private static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    private static final int REQUEST_BYTES = 28;
    private static final int SIMPLE_REPLY_BYTES = 16;
    private static final int CMD_READ = 0;
    private static final int CMD_WRITE = 1;
    private static final int IO_BYTES = 4096;
    private static final int DEPTH = 32;
    private static final int DEVICE_BYTES = 64 << 20;

    private NbdServer server;
    private Path socket;
    private SocketChannel ch;
    private final ByteBuffer req = ByteBuffer.allocateDirect(REQUEST_BYTES * DEPTH);
    private final ByteBuffer writeReq = ByteBuffer.allocateDirect(REQUEST_BYTES + IO_BYTES);
    private final ByteBuffer reply = ByteBuffer.allocateDirect((SIMPLE_REPLY_BYTES + IO_BYTES) * DEPTH);
    private long cookie;

    @Setup
    public void setup() throws IOException {
        MemDevice dev = new MemDevice("mem", DEVICE_BYTES);
        server = new NbdServer(new ExportProvider() {
            @Override
            public List<ExportInfo> list() {
                return List.of(new ExportInfo("mem", ""));
            }

            @Override
            public Export open(String name) {
                return new Export() {
                    @Override
                    public String name() {
                        return "mem";
                    }

                    @Override
                    public BlockDevice device() {
                        return dev;
                    }
                };
            }

            @Override
            public String defaultExportName() {
                return "mem";
            }
        });
        socket = Files.createTempDirectory("jmh-nbd").resolve("nbd.sock");
        server.listenUnix(socket);
        ch = SocketChannel.open(UnixDomainSocketAddress.of(socket));
        ByteBuffer greet = readExactly(18);
        if (greet.getLong(0) != NBDMAGIC || greet.getLong(8) != IHAVEOPT) {
            throw new IOException("not a fixed-newstyle NBD server");
        }
        byte[] name = "mem".getBytes(StandardCharsets.UTF_8);
        ByteBuffer opt = ByteBuffer.allocate(4 + 16 + name.length);
        opt.putInt(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).putLong(IHAVEOPT).putInt(OPT_EXPORT_NAME).putInt(name.length)
                .put(name).flip();
        writeAll(opt);
        ByteBuffer info = readExactly(10);
        if (info.getLong(0) != DEVICE_BYTES) {
            throw new IOException("export size " + info.getLong(0));
        }
    }

    @TearDown
    public void tearDown() throws IOException {
        ch.close();
        server.close();
        Files.deleteIfExists(socket);
        Files.deleteIfExists(socket.getParent());
    }

    private ByteBuffer readExactly(int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new IOException("server closed");
            }
        }
        return b.flip();
    }

    private void writeAll(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    private void putRequest(ByteBuffer b, int type, long offset) {
        b.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) type).putLong(++cookie).putLong(offset)
                .putInt(IO_BYTES);
    }

    private void readReplies(int count, int dataBytes) throws IOException {
        reply.clear().limit(count * (SIMPLE_REPLY_BYTES + dataBytes));
        while (reply.hasRemaining()) {
            if (ch.read(reply) < 0) {
                throw new IOException("server closed");
            }
        }
        if (reply.getInt(0) != SIMPLE_REPLY_MAGIC || reply.getInt(4) != 0) {
            throw new IOException("bad reply");
        }
    }

    private long offset(long i) {
        return (i * 7919 * IO_BYTES) % DEVICE_BYTES;
    }

    @Benchmark
    public void read4kQd1() throws IOException {
        req.clear();
        putRequest(req, CMD_READ, offset(cookie));
        writeAll(req.flip());
        readReplies(1, IO_BYTES);
    }

    @Benchmark
    public void write4kQd1() throws IOException {
        writeReq.clear();
        putRequest(writeReq, CMD_WRITE, offset(cookie));
        writeReq.position(REQUEST_BYTES + IO_BYTES);
        writeAll(writeReq.flip());
        readReplies(1, 0);
    }

    /** 32 reads sent at once, then 32 replies (replies may come in any order; all are 4 KiB). */
    @Benchmark
    @OperationsPerInvocation(DEPTH)
    public void read4kBatch32() throws IOException {
        req.clear();
        for (int i = 0; i < DEPTH; i++) {
            putRequest(req, CMD_READ, offset(cookie));
        }
        writeAll(req.flip());
        readReplies(DEPTH, IO_BYTES);
    }
}
