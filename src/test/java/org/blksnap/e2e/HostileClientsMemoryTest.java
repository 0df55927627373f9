package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.blksnap.ctrl.api.Operation;
import org.blksnap.util.FileTrees;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A real blksnapd, started by {@code bin/blksnapd} in its own JVM with the launcher's memory limits,
 * is churned by thousands of short and malformed connections from several concurrent hostile
 * clients: garbage instead of a handshake, unknown client flags, option floods, oversized options,
 * random requests (random command, flags, offset, length; writes with real payloads) after a valid
 * handshake, half requests, connection floods beyond {@code --max-connections}, and random
 * control-API bodies. Meanwhile its resident memory (VmRSS of /proc/PID/status) is sampled.
 *
 * <p>Asserted (the bounds are the ones docs/RELIABILITY.md states): resident memory after the churn
 * is at most {@link #RSS_GROWTH_BOUND_BYTES} above the level after a warm-up round, and never above
 * {@link #RSS_BOUND_BYTES}; the log stays under {@link #LOG_BASE_BYTES} plus
 * {@link #LOG_BYTES_PER_10_S} per 10 s of churn and has no ERROR line; the daemon still serves, and
 * the data written before the churn to an export no hostile client touches reads back unchanged.
 *
 * <p>Runs two rounds of {@value #DEFAULT_SECONDS} s of churn by default (the first warms up);
 * {@code -Dblksnap.churn.seconds=N} makes each round N s (docs/RELIABILITY.md records longer runs). The daemon is killed and its directory under
 * /dev/shm removed even when the test fails.
 */
@Timeout(value = 10, unit = TimeUnit.MINUTES)
class HostileClientsMemoryTest {
    static final int DEFAULT_SECONDS = 15;
    /**
     * Resident memory may grow this much during the second round of churn (the first one warms up):
     * the payload pool may still fill size classes up to its 128 MiB cap, and the heap moves around
     * its soft maximum. A leak of 1 KiB per connection would exceed it (over 100,000 connections).
     */
    static final long RSS_GROWTH_BOUND_BYTES = 160L << 20;
    /**
     * Resident memory never exceeds this with the launcher's limits (idle is about 130 MiB): heap near
     * its soft maximum (256 MiB), free payload buffers (at most 128 MiB), buffers in use, JVM overhead.
     */
    static final long RSS_BOUND_BYTES = 768L << 20;
    /** The log of start-up. */
    static final long LOG_BASE_BYTES = 8 << 10;
    /** Rate-limited lines: at most 8 kinds x 6 lines of a few hundred bytes per 10 s. */
    static final long LOG_BYTES_PER_10_S = 24 << 10;
    static final int MAX_CONNECTIONS = 32;
    static final int WORKERS = 12;
    static final int DATA_BYTES = 4 << 20;

    private static final long NBDMAGIC = 0x4e42444d41474943L;
    private static final long IHAVEOPT = 0x49484156454F5054L;
    private static final int OPT_GO = 7;
    private static final int OPT_STRUCTURED_REPLY = 8;
    private static final int REQUEST_MAGIC = 0x25609513;

    private Path dir;
    private Process daemon;

    @AfterEach
    void cleanUp() throws Exception {
        if (daemon != null) {
            daemon.destroyForcibly();
            daemon.waitFor(30, TimeUnit.SECONDS);
        }
        FileTrees.deleteRecursively(dir);
    }

    @Test
    void residentMemoryAndLogStayBoundedWhileHostileClientsChurnAndNoDataIsLost() throws Exception {
        int seconds = Integer.getInteger("blksnap.churn.seconds", DEFAULT_SECONDS);
        dir = Files.createDirectories(Path.of("/dev/shm", "blksnap-churn-" + ProcessHandle.current().pid()));
        Path nbd = dir.resolve("nbd.sock");
        Path control = dir.resolve("control.sock");
        Path log = dir.resolve("blksnapd.log");
        ProcessBuilder pb = new ProcessBuilder(Path.of("bin/blksnapd").toAbsolutePath().toString(),
                "--data-dir", dir.resolve("data").toString(),
                "--device", "victim=" + dir.resolve("victim.img") + ":64M",
                "--device", "data=" + dir.resolve("data.img") + ":16M",
                "--listen", "none", "--socket", nbd.toString(), "--control", control.toString(),
                "--max-connections", String.valueOf(MAX_CONNECTIONS))
                .redirectErrorStream(false)
                .redirectOutput(dir.resolve("blksnapd.out").toFile())
                .redirectError(log.toFile());
        pb.environment().put("BLKSNAPD_CLASSPATH", System.getProperty("java.class.path"));
        daemon = pb.start();
        Process started = daemon;
        // Should this JVM be killed before @AfterEach runs (the fork timeout), the daemon goes with it.
        Runtime.getRuntime().addShutdownHook(new Thread(started::destroyForcibly));
        awaitListening(nbd);

        long startRss = rssBytes();
        byte[] data = new byte[DATA_BYTES];
        new Random(7).nextBytes(data);
        try (RawNbd c = RawNbd.go(nbd, "data")) {
            c.write(0, data);
        }

        // A first round as long as the measured one: the heap grows to its soft maximum and the payload
        // pool fills its size classes. Then the same churn again must not grow memory any more.
        Churn warmUp = new Churn(nbd, control, 1);
        warmUp.run(Duration.ofSeconds(seconds));
        Thread.sleep(1000);
        long warmRss = rssBytes();

        Churn churn = new Churn(nbd, control, 2);
        AtomicLong peakRss = new AtomicLong(warmRss);
        Thread sampler = Thread.ofVirtual().start(() -> {
            while (!Thread.currentThread().isInterrupted()) {
                try {
                    peakRss.accumulateAndGet(rssBytes(), Math::max);
                    Thread.sleep(250);
                } catch (IOException | InterruptedException e) {
                    return;
                }
            }
        });
        churn.run(Duration.ofSeconds(seconds));
        Thread.sleep(2000); // refusals and connections in their last reads end
        sampler.interrupt();
        sampler.join();
        long endRss = rssBytes();
        peakRss.accumulateAndGet(endRss, Math::max);

        String summary = String.format("%,d + %,d NBD connections and %,d + %,d control requests in 2 x %d s by %d"
                        + " clients; RSS %d MiB at start, %d MiB after the first round, %d MiB after the second, %d MiB"
                        + " peak; log %,d bytes (%,d lines)",
                warmUp.connections.get(), churn.connections.get(), warmUp.controlRequests.get(),
                churn.controlRequests.get(), seconds, WORKERS, startRss >> 20, warmRss >> 20, endRss >> 20,
                peakRss.get() >> 20, Files.size(log), Files.readAllLines(log).size());
        System.out.println(summary);
        assertThat(daemon.isAlive()).as("the daemon survives: %s", summary).isTrue();
        assertThat(churn.connections.get()).as("thousands of connections were tried").isGreaterThanOrEqualTo(1000);
        assertThat(endRss - warmRss).as("RSS growth: %s", summary).isLessThanOrEqualTo(RSS_GROWTH_BOUND_BYTES);
        assertThat(peakRss.get()).as("peak RSS: %s", summary).isLessThanOrEqualTo(RSS_BOUND_BYTES);
        long logBound = LOG_BASE_BYTES + LOG_BYTES_PER_10_S * 2 * ((seconds + 9) / 10 + 1);
        assertThat(Files.size(log)).as("log size: %s", summary).isLessThanOrEqualTo(logBound);
        assertThat(Files.readAllLines(log)).as("no unexpected failure was logged").noneMatch(l -> l.contains(" ERROR "));

        try (RawNbd c = RawNbd.go(nbd, "data")) {
            assertThat(c.read(0, DATA_BYTES)).as("data written before the churn").isEqualTo(data);
        }
        assertThat(controlStatus(control, "GET", Operation.VERSION.path(), null)).isEqualTo(200);
    }

    /**
     * The same churn against a daemon started by hand (for figures of another build, e.g. main):
     * {@code NBD_SOCKET CONTROL_SOCKET PID SECONDS}; the daemon must serve exports {@code victim} and
     * {@code data}. Prints the RSS after a 5 s warm-up, after the churn and at its peak.
     */
    public static void main(String[] args) throws Exception {
        Path nbd = Path.of(args[0]);
        Path control = Path.of(args[1]);
        long pid = Long.parseLong(args[2]);
        int seconds = Integer.parseInt(args[3]);
        new Churn(nbd, control, 1).run(Duration.ofSeconds(5));
        Thread.sleep(1000);
        long warm = rssBytes(pid);
        Churn churn = new Churn(nbd, control, 2);
        AtomicLong peak = new AtomicLong(warm);
        Thread sampler = Thread.ofVirtual().start(() -> {
            try {
                while (true) {
                    peak.accumulateAndGet(rssBytes(pid), Math::max);
                    Thread.sleep(250);
                }
            } catch (IOException | InterruptedException e) {
                // done
            }
        });
        churn.run(Duration.ofSeconds(seconds));
        Thread.sleep(2000);
        sampler.interrupt();
        sampler.join();
        long end = rssBytes(pid);
        System.out.printf("%,d NBD connections and %,d control requests in %d s by %d clients; RSS %d MiB warm,"
                        + " %d MiB after, %d MiB peak%n", churn.connections.get(), churn.controlRequests.get(), seconds,
                WORKERS, warm >> 20, end >> 20, Math.max(peak.get(), end) >> 20);
    }

    private long rssBytes() throws IOException {
        return rssBytes(daemon.pid());
    }

    static long rssBytes(long pid) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc", String.valueOf(pid), "status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
            }
        }
        throw new IOException("no VmRSS in /proc/" + pid + "/status");
    }

    private void awaitListening(Path nbd) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (System.nanoTime() < deadline) {
            assertThat(daemon.isAlive()).as("blksnapd exited at start-up with %s", daemon.isAlive() ? 0
                    : daemon.exitValue()).isTrue();
            if (Files.exists(nbd)) {
                try (SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(nbd))) {
                    return;
                } catch (IOException e) {
                    // not accepting yet
                }
            }
            Thread.sleep(100);
        }
        throw new AssertionError("blksnapd did not listen on " + nbd + " within 120 s");
    }

    /** Sends one HTTP request to the control socket; returns the status, or -1 if the connection failed. */
    static int controlStatus(Path control, String method, String path, byte[] body) {
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
             Deadline deadline = new Deadline(List.of(ch))) {
            ch.connect(UnixDomainSocketAddress.of(control));
            String head = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    + (body == null ? "" : "Content-Type: application/json\r\nContent-Length: " + body.length + "\r\n")
                    + "\r\n";
            writeAll(ch, ByteBuffer.wrap(head.getBytes(StandardCharsets.US_ASCII)));
            if (body != null) {
                writeAll(ch, ByteBuffer.wrap(body));
            }
            byte[] all = java.nio.channels.Channels.newInputStream(ch).readAllBytes();
            String text = new String(all, StandardCharsets.US_ASCII);
            return text.startsWith("HTTP/1.1 ") ? Integer.parseInt(text.substring(9, 12)) : -1;
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }

    static void writeAll(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    /**
     * Closes the channels after {@link #AFTER} unless closed first: a client that stops reading its
     * replies while it still sends requests blocks in a write once the daemon, which cannot send its
     * replies, stops reading too; a real hostile client would sit there, this one gives up.
     */
    static final class Deadline implements AutoCloseable {
        static final Duration AFTER = Duration.ofSeconds(3);
        private final Thread watchdog;

        Deadline(List<SocketChannel> channels) {
            watchdog = Thread.ofVirtual().start(() -> {
                try {
                    Thread.sleep(AFTER);
                } catch (InterruptedException e) {
                    return;
                }
                for (SocketChannel ch : channels) {
                    try {
                        ch.close();
                    } catch (IOException e) {
                        // already closed
                    }
                }
            });
        }

        @Override
        public void close() {
            watchdog.interrupt();
        }
    }

    /** Concurrent hostile clients, each picking a random misbehaviour per connection. */
    static final class Churn {
        final Path nbd;
        final Path control;
        final long seed;
        final AtomicLong connections = new AtomicLong();
        final AtomicLong controlRequests = new AtomicLong();

        Churn(Path nbd, Path control, long seed) {
            this.nbd = nbd;
            this.control = control;
            this.seed = seed;
        }

        void run(Duration duration) throws InterruptedException {
            long end = System.nanoTime() + duration.toNanos();
            List<Thread> workers = new ArrayList<>();
            for (int w = 0; w < WORKERS; w++) {
                Random random = new Random(seed * 1000 + w);
                workers.add(Thread.ofVirtual().start(() -> {
                    while (System.nanoTime() < end) {
                        try {
                            once(random);
                        } catch (IOException | RuntimeException e) {
                            // the daemon hung up on us, as it should
                        }
                    }
                }));
            }
            for (Thread t : workers) {
                t.join();
            }
        }

        private void once(Random r) throws IOException {
            int kind = r.nextInt(10);
            if (kind == 9) {
                controlRequests.incrementAndGet();
                Operation[] ops = Operation.values();
                byte[] body = r.nextBoolean() ? randomBytes(r, r.nextInt(2048))
                        : ("{\"" + Long.toHexString(r.nextLong()) + "\": " + r.nextInt() + ", \"devices\": [\""
                        + Long.toHexString(r.nextLong()) + "\"]}").getBytes(StandardCharsets.UTF_8);
                controlStatus(control, r.nextInt(8) == 0 ? "PUT" : "POST",
                        r.nextInt(6) == 0 ? "/v1/" + Long.toHexString(r.nextLong()) : ops[r.nextInt(ops.length)].path(),
                        body);
                return;
            }
            if (kind == 8) {
                flood(r);
                return;
            }
            connections.incrementAndGet();
            try (SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(nbd));
                 Deadline deadline = new Deadline(List.of(ch))) {
                switch (kind) {
                    case 0 -> writeAll(ch, ByteBuffer.wrap(randomBytes(r, 1 + r.nextInt(600))));
                    case 1 -> {
                        readGreeting(ch);
                        writeAll(ch, ByteBuffer.allocate(4).putInt(0, 0x100 << r.nextInt(20)));
                    }
                    case 2 -> {
                        start(ch);
                        int n = 1 + r.nextInt(200);
                        for (int i = 0; i < n; i++) {
                            byte[] d = randomBytes(r, r.nextInt(256));
                            writeAll(ch, ByteBuffer.allocate(16 + d.length).putLong(IHAVEOPT).putInt(r.nextInt(64))
                                    .putInt(d.length).put(d).flip());
                        }
                    }
                    case 3 -> {
                        start(ch);
                        writeAll(ch, ByteBuffer.allocate(16).putLong(IHAVEOPT).putInt(r.nextInt())
                                .putInt(r.nextInt(Integer.MAX_VALUE)).flip());
                    }
                    case 4, 5, 6 -> {
                        go(ch, "victim");
                        int n = 1 + r.nextInt(40);
                        for (int i = 0; i < n; i++) {
                            randomRequest(ch, r);
                        }
                        if (r.nextBoolean()) {
                            drain(ch, r.nextInt(64 << 10));
                        }
                    }
                    default -> {
                        go(ch, "victim");
                        writeAll(ch, ByteBuffer.allocate(14).putInt(REQUEST_MAGIC).putShort((short) 0)
                                .putShort((short) 1).putInt(r.nextInt()).flip()); // half a request header
                    }
                }
            }
        }

        /** Opens more connections than the daemon serves, holds them in handshake, then drops them. */
        private void flood(Random r) {
            List<SocketChannel> held = new java.util.concurrent.CopyOnWriteArrayList<>();
            try (Deadline deadline = new Deadline(held)) {
                for (int i = 0; i < MAX_CONNECTIONS / 2 + r.nextInt(MAX_CONNECTIONS); i++) {
                    connections.incrementAndGet();
                    SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(nbd));
                    held.add(ch);
                    readGreeting(ch);
                }
            } catch (IOException e) {
                // refused outright
            } finally {
                for (SocketChannel ch : held) {
                    try {
                        ch.close();
                    } catch (IOException e) {
                        // nothing
                    }
                }
            }
        }

        private static void randomRequest(SocketChannel ch, Random r) throws IOException {
            int type = r.nextInt(12);
            long length = r.nextInt(4) == 0 ? Integer.toUnsignedLong(r.nextInt()) : r.nextInt(1 << 20);
            long offset = r.nextBoolean() ? r.nextLong() : r.nextLong(64L << 20);
            int flags = r.nextInt(4) == 0 ? r.nextInt(1 << 16) : 0;
            ByteBuffer h = ByteBuffer.allocate(28).putInt(REQUEST_MAGIC).putShort((short) flags).putShort((short) type)
                    .putLong(r.nextLong()).putLong(offset).putInt((int) length).flip();
            writeAll(ch, h);
            if (type == 1) {
                long payload = Math.min(length, 256 << 10); // may stop short: the daemon waits for the rest
                writeAll(ch, ByteBuffer.allocate((int) payload));
                if (payload < length) {
                    throw new IOException("stopped in the middle of a payload");
                }
            }
        }

        /** Reads what replies have arrived, without waiting for more. */
        private static void drain(SocketChannel ch, int bytes) throws IOException {
            ch.configureBlocking(false);
            ch.read(ByteBuffer.allocate(Math.max(1, bytes)));
        }

        private static byte[] randomBytes(Random r, int n) {
            byte[] b = new byte[n];
            r.nextBytes(b);
            return b;
        }

        private static void readGreeting(SocketChannel ch) throws IOException {
            RawNbd.readExactly(ch, 18);
        }

        private static void start(SocketChannel ch) throws IOException {
            readGreeting(ch);
            writeAll(ch, ByteBuffer.allocate(4).putInt(0, 3));
        }

        private static void go(SocketChannel ch, String export) throws IOException {
            start(ch);
            RawNbd.option(ch, OPT_STRUCTURED_REPLY, new byte[0]);
            RawNbd.goOption(ch, export);
        }
    }

    /** A minimal well-behaved client: GO with structured replies, then whole reads and writes. */
    static final class RawNbd implements AutoCloseable {
        private final SocketChannel ch;
        private long cookie = 1;

        private RawNbd(SocketChannel ch) {
            this.ch = ch;
        }

        static RawNbd go(Path socket, String export) throws IOException {
            SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(socket));
            readExactly(ch, 18);
            writeAll(ch, ByteBuffer.allocate(4).putInt(0, 3));
            option(ch, OPT_STRUCTURED_REPLY, new byte[0]);
            goOption(ch, export);
            return new RawNbd(ch);
        }

        /** Sends an option and reads its replies up to the final one; returns the final reply type. */
        static int option(SocketChannel ch, int option, byte[] data) throws IOException {
            writeAll(ch, ByteBuffer.allocate(16 + data.length).putLong(IHAVEOPT).putInt(option).putInt(data.length)
                    .put(data).flip());
            while (true) {
                ByteBuffer h = readExactly(ch, 20);
                int type = h.getInt(12);
                readExactly(ch, h.getInt(16));
                if (type == 1 || type < 0) {
                    return type;
                }
            }
        }

        static void goOption(SocketChannel ch, String export) throws IOException {
            byte[] name = export.getBytes(StandardCharsets.UTF_8);
            int type = option(ch, OPT_GO, ByteBuffer.allocate(4 + name.length + 2).putInt(name.length).put(name)
                    .putShort((short) 0).array());
            if (type != 1) {
                throw new IOException("GO " + export + " refused: reply type 0x" + Integer.toHexString(type));
            }
        }

        void write(long offset, byte[] data) throws IOException {
            long c = cookie++;
            writeAll(ch, ByteBuffer.allocate(28).putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) 1).putLong(c)
                    .putLong(offset).putInt(data.length).flip());
            writeAll(ch, ByteBuffer.wrap(data));
            ByteBuffer reply = readExactly(ch, 16);
            assertThat(reply.getInt(4)).as("WRITE error").isZero();
        }

        byte[] read(long offset, int length) throws IOException {
            long c = cookie++;
            writeAll(ch, ByteBuffer.allocate(28).putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) 0).putLong(c)
                    .putLong(offset).putInt(length).flip());
            byte[] result = new byte[length];
            boolean done = false;
            while (!done) {
                ByteBuffer h = readExactly(ch, 20);
                done = (h.getShort(4) & 1) != 0;
                int type = Short.toUnsignedInt(h.getShort(6));
                ByteBuffer payload = readExactly(ch, h.getInt(16));
                if (type == 1) { // OFFSET_DATA
                    long at = payload.getLong(0) - offset;
                    payload.position(8).get(result, (int) at, payload.remaining());
                } else if (type == 2) { // OFFSET_HOLE: zeros
                    long at = payload.getLong(0) - offset;
                    Arrays.fill(result, (int) at, (int) at + payload.getInt(8), (byte) 0);
                } else if (type != 0) {
                    throw new IOException("READ failed: chunk type " + type);
                }
            }
            return result;
        }

        static ByteBuffer readExactly(SocketChannel ch, int n) throws IOException {
            ByteBuffer b = ByteBuffer.allocate(n);
            while (b.hasRemaining()) {
                if (ch.read(b) < 0) {
                    throw new IOException("end of stream with " + b.remaining() + " of " + n + " bytes missing");
                }
            }
            return b.flip();
        }

        @Override
        public void close() throws IOException {
            ch.close();
        }
    }
}
