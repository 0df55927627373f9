package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.blksnap.e2e.HostileClientsMemoryTest.RawNbd;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Clients that stall (half a WRITE payload, 64 MiB of READ replies never read, a handshake never
 * finished) hold up neither another client's I/O, nor a snapshot take through the CLI, nor the
 * daemon's shutdown; and nothing of the half-sent payload reaches the device. The daemon runs with
 * its default timeouts (30 s, 30 s, 60 s), so the stalled clients are still there while all of it
 * happens.
 */
@Timeout(value = 3, unit = TimeUnit.MINUTES)
class StalledClientsTest {
    static final int BLOCK = 64 << 10;
    /** The well-behaved client works from here on; the stalled WRITE covers [0, 8 MiB). */
    static final long WORK_OFFSET = 16 << 20;
    private static final int REQUEST_MAGIC = 0x25609513;

    @TempDir
    Path dir;

    @Test
    void stalledClientsHoldUpNeitherAnotherClientNorATakeNorShutdown() throws Exception {
        DaemonHarness d = DaemonHarness.start(dir, List.of("disk0=64M"), List.of("diff_storage_minimum=16384"));
        List<SocketChannel> stalled = new ArrayList<>();
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong requests = new AtomicLong();
        CompletableFuture<Void> worker = null;
        boolean closed = false;
        try {
            Path socket = dir.resolve("nbd.sock");
            byte[] before = pattern(1);
            byte[] after = pattern(2);
            try (RawNbd c = RawNbd.go(socket, "disk0")) {
                c.write(WORK_OFFSET, before);
            }

            SocketChannel half = goRaw(socket);
            stalled.add(half);
            HostileClientsMemoryTest.writeAll(half, header(1, 7, 0, 8 << 20));
            byte[] junk = new byte[1 << 20];
            Arrays.fill(junk, (byte) 0xEE);
            HostileClientsMemoryTest.writeAll(half, ByteBuffer.wrap(junk)); // 1 of 8 MiB, then nothing

            SocketChannel deaf = goRaw(socket);
            stalled.add(deaf);
            for (int i = 0; i < 4; i++) {
                HostileClientsMemoryTest.writeAll(deaf, header(0, 100 + i, 0, 16 << 20)); // replies never read
            }

            SocketChannel mute = SocketChannel.open(UnixDomainSocketAddress.of(socket));
            stalled.add(mute); // connects, never says a word

            worker = CompletableFuture.runAsync(() -> {
                try (RawNbd c = RawNbd.go(socket, "disk0")) {
                    for (int i = 0; !stop.get(); i++) {
                        long at = WORK_OFFSET + BLOCK + (long) (i % 64) * BLOCK;
                        byte[] data = pattern(1000 + i);
                        c.write(at, data);
                        assertThat(c.read(at, BLOCK)).isEqualTo(data);
                        requests.addAndGet(2);
                    }
                } catch (IOException e) {
                    throw new RuntimeException(e);
                }
            });
            long served = requests.get();
            await(() -> requests.get() > served + 100, "the other client is served while three clients stall");

            String id = d.ok("snapshot", "create", "--device", "disk0");
            d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("ds").toString(), "--size", "32M");
            d.ok("snapshot", "take", "--id", id);
            try (RawNbd c = RawNbd.go(socket, "disk0")) {
                c.write(WORK_OFFSET, after);
                assertThat(c.read(WORK_OFFSET, BLOCK)).isEqualTo(after);
                assertThat(c.read(0, BLOCK)).as("nothing of the stalled half payload was written").containsOnly(0);
            }
            try (RawNbd image = RawNbd.go(socket, "blksnap-image0")) {
                assertThat(image.read(WORK_OFFSET, BLOCK)).as("the image holds take-time data").isEqualTo(before);
            }
            long afterTake = requests.get();
            await(() -> requests.get() > afterTake + 100, "the other client goes on after the take");
            d.ok("snapshot", "destroy", "--id", id);

            stop.set(true);
            worker.get(30, TimeUnit.SECONDS);
            long start = System.nanoTime();
            d.close();
            closed = true;
            Duration took = Duration.ofNanos(System.nanoTime() - start);
            // NBD shutdown grace 5 s + 2 s for all connections together, then the rest of the daemon
            assertThat(took).as("the daemon stops promptly with stalled clients").isLessThan(Duration.ofSeconds(20));
            for (SocketChannel ch : stalled) {
                assertThat(readToEnd(ch)).as("the daemon hung up on every stalled client").isTrue();
            }
        } finally {
            stop.set(true);
            for (SocketChannel ch : stalled) {
                ch.close();
            }
            if (!closed) {
                d.close();
            }
        }
    }

    private static void await(java.util.function.BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - deadline > 0) {
                throw new AssertionError("timed out waiting until " + what);
            }
            Thread.sleep(20);
        }
    }

    private static byte[] pattern(int seed) {
        byte[] b = new byte[BLOCK];
        new java.util.Random(seed).nextBytes(b);
        return b;
    }

    /** A simple request header: type 0 READ, 1 WRITE. */
    private static ByteBuffer header(int type, long cookie, long offset, int length) {
        return ByteBuffer.allocate(28).putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) type).putLong(cookie)
                .putLong(offset).putInt(length).flip();
    }

    /** A raw connection in transmission on disk0 (structured replies). */
    private static SocketChannel goRaw(Path socket) throws IOException {
        SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(socket));
        RawNbd.readExactly(ch, 18);
        HostileClientsMemoryTest.writeAll(ch, ByteBuffer.allocate(4).putInt(0, 3));
        RawNbd.option(ch, 8, new byte[0]);
        RawNbd.goOption(ch, "disk0");
        return ch;
    }

    /** Reads (and drops) until the end of the stream; true if it ended, false if reading failed otherwise. */
    private static boolean readToEnd(SocketChannel ch) {
        ByteBuffer b = ByteBuffer.allocate(1 << 20);
        try {
            while (ch.read(b.clear()) >= 0) {
                // drop
            }
            return true;
        } catch (IOException e) {
            return e.getMessage() != null && e.getMessage().contains("reset");
        }
    }
}
