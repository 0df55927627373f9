package org.blksnap.nbd;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.Pipe;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Runs one fuzz input against the real NBD server, in-process, over a pair of pipes: the input is
 * what a client sends (after the greeting), then the client's side ends its stream. Checked after
 * each input (a violation is a finding):
 * <ul>
 *   <li>the server answers and hangs up within {@link #HANG} (no hang);</li>
 *   <li>the connection ends and frees its native memory (ConnectionMemory back to 0);</li>
 *   <li>payload buffers never exceed the documented bound at any moment (BufferPool's high-water
 *       mark: twice the per-connection in-flight bytes, for power-of-two rounding, plus what the pool
 *       may keep free);</li>
 *   <li>no unexpected failure is logged (the server's "unexpected" log kind counts bugs);</li>
 *   <li>the server still serves a well-behaved client afterwards (checked every
 *       {@link #LIVENESS_EVERY} inputs).</li>
 * </ul>
 * One server serves every input of a run (as one daemon serves all clients); thread-safe for one
 * fuzzing thread.
 */
final class NbdFuzzHarness {
    static final int SIZE = 1 << 20;
    /** Generous: a real hang never ends, and a starved shared machine can be slow. */
    static final Duration HANG = Duration.ofSeconds(120);
    static final int LIVENESS_EVERY = 1000;
    /** The most payload memory one connection may ever make the server hold (see the class comment). */
    static final long PAYLOAD_BOUND_BYTES = 2L * NbdServer.Config.defaults().maxBytesInFlight() + BufferPool.MAX_RETAINED_BYTES;

    private static NbdFuzzHarness instance;

    final TestExports exports = new TestExports();
    final NbdServer server;
    private long inputs;

    private NbdFuzzHarness() {
        exports.add("disk", "the disk", new MemoryDevice("disk", SIZE), false);
        exports.add("ro", "", new MemoryDevice("ro", SIZE), true,
                new TestExports.DirtyBitmap("qemu:dirty-bitmap:b0", SIZE, new long[][] {{4096, 65536}, {SIZE / 2, 8192}}));
        server = new NbdServer(exports, NbdServer.Config.defaults().withShutdownGrace(Duration.ofSeconds(2)));
    }

    static synchronized NbdFuzzHarness get() {
        if (instance == null) {
            instance = new NbdFuzzHarness();
            // Warm-up outside the hang bound: the first connection loads (and the fuzzer instruments)
            // the server's classes, which can take a while on a starved machine.
            instance.checkLiveness();
        }
        return instance;
    }

    /** Sends {@code clientBytes}, ends the client's stream, and checks everything listed above. */
    void run(byte[] clientBytes) {
        long unexpectedBefore = server.logs().unexpected.total();
        try {
            Pipe toServer = Pipe.open();
            Pipe toClient = Pipe.open();
            server.serve(new PipeChannel(toServer.source(), toClient.sink()));
            CompletableFuture<Long> replies = CompletableFuture.supplyAsync(() -> drain(toClient.source()),
                    r -> Thread.ofVirtual().start(r));
            try {
                ByteBuffer b = ByteBuffer.wrap(clientBytes);
                while (b.hasRemaining()) {
                    toServer.sink().write(b);
                }
            } catch (IOException e) {
                // the server hung up before reading everything: allowed (protocol errors end connections)
            } finally {
                toServer.sink().close();
            }
            try {
                replies.get(HANG.toMillis(), TimeUnit.MILLISECONDS);
            } catch (TimeoutException e) {
                throw new AssertionError("hang: the server neither answered nor hung up within " + HANG
                        + " after the client's stream ended", e);
            } catch (ExecutionException e) {
                throw new AssertionError("reading the replies failed", e.getCause());
            } finally {
                toClient.source().close();
            }
            awaitNoConnection();
        } catch (IOException e) {
            throw new AssertionError("pipes failed", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
        long memory = server.connectionMemoryBytes();
        if (memory != 0) {
            throw new AssertionError("a connection ended but " + memory + " bytes of its native memory are still held");
        }
        long peak = server.pool().peakAllocatedBytes();
        if (peak > PAYLOAD_BOUND_BYTES) {
            throw new AssertionError("payload buffers reached " + peak + " bytes, over the bound of " + PAYLOAD_BOUND_BYTES);
        }
        long unexpected = server.logs().unexpected.total() - unexpectedBefore;
        if (unexpected != 0) {
            throw new AssertionError(unexpected + " unexpected failure(s) logged (see the log above)");
        }
        if (++inputs % LIVENESS_EVERY == 0) {
            checkLiveness();
        }
    }

    private void awaitNoConnection() throws InterruptedException {
        long deadline = System.nanoTime() + HANG.toNanos();
        while (server.connectionCount() != 0) {
            if (System.nanoTime() - deadline > 0) {
                throw new AssertionError("hang: the connection did not end within " + HANG + " after its client left");
            }
            Thread.sleep(0, 200_000);
        }
    }

    /** A well-behaved client writes and reads back. */
    void checkLiveness() {
        try (NbdTestClient c = PipeChannel.connect(server)) {
            c.go("disk", true);
            byte[] data = NbdProtocolTest.pattern(4096, (int) inputs);
            if (c.write(0, data, 0) != 0 || !java.util.Arrays.equals(c.read(0, 4096), data)) {
                throw new AssertionError("the server no longer serves a well-behaved client correctly");
            }
            c.disconnect();
        } catch (IOException e) {
            throw new AssertionError("the server no longer serves a well-behaved client", e);
        }
    }

    private static long drain(Pipe.SourceChannel in) {
        ByteBuffer b = ByteBuffer.allocate(1 << 16);
        long total = 0;
        try {
            int n;
            while ((n = in.read(b.clear())) >= 0) {
                total += n;
            }
        } catch (IOException e) {
            // closed: done
        }
        return total;
    }
}
