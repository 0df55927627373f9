package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;
import static org.blksnap.nbd.NbdHandshakeDescriptor.*;
import static org.blksnap.nbd.NbdTransmissionDescriptor.*;

import java.io.IOException;
import java.net.SocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The limits that keep one client from stalling the others, the server or its memory: handshake,
 * request and reply timeouts, the per-export connection limit, the server-wide in-flight budget, and
 * a shutdown that does not wait once per stalled client. Over a real transport (subclasses pick it),
 * because stalls live in socket buffers.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
abstract class NbdLimitsTest {
    static final int SIZE = 16 << 20;
    static final int BLOCK = 4096;
    static final Duration SHORT = Duration.ofSeconds(1);

    @TempDir
    Path dir;
    TestExports exports;
    MemoryDevice disk;
    final List<NbdServer> servers = new ArrayList<>();
    final List<NbdTestClient> clients = new ArrayList<>();

    abstract SocketAddress listen(NbdServer server, Path dir) throws IOException;

    @BeforeEach
    void exports() {
        exports = new TestExports();
        disk = new MemoryDevice("disk", SIZE);
        exports.add("disk", "", disk, false);
        exports.add("other", "", new MemoryDevice("other", SIZE), false);
    }

    @AfterEach
    void stop() throws IOException {
        for (NbdTestClient c : clients) {
            c.close();
        }
        for (NbdServer s : servers) {
            s.close();
        }
    }

    SocketAddress start(NbdServer.Config config) throws IOException {
        NbdServer s = new NbdServer(exports, config.withShutdownGrace(Duration.ofSeconds(2)));
        servers.add(s);
        return listen(s, Files.createDirectories(dir.resolve("s" + servers.size())));
    }

    NbdServer server() {
        return servers.getLast();
    }

    NbdTestClient connect(SocketAddress at) throws IOException {
        NbdTestClient c = NbdTestClient.connect(at);
        clients.add(c);
        return c;
    }

    long timeouts() {
        return server().logs().timeouts.total();
    }

    /** Reads and writes on a fresh connection, as a well-behaved client would, and checks the data. */
    void anotherClientIsServed(SocketAddress at, int round) throws IOException {
        NbdTestClient good = connect(at);
        good.go("disk", true);
        byte[] data = NbdProtocolTest.pattern(BLOCK, round);
        assertThat(good.write((long) round * BLOCK, data, 0)).isZero();
        assertThat(good.read((long) round * BLOCK, BLOCK)).isEqualTo(data);
        good.disconnect();
    }

    @Test
    void aClientThatStallsInTheHandshakeIsDroppedAndOthersAreServedMeanwhile() throws Exception {
        SocketAddress at = start(NbdServer.Config.defaults().withTimeouts(SHORT, Duration.ZERO, Duration.ZERO));
        NbdTestClient stalled = connect(at);
        stalled.readGreeting(); // and then nothing
        anotherClientIsServed(at, 1);
        assertThat(stalled.readToEnd()).as("the server hangs up").isEmpty();
        assertThat(timeouts()).isEqualTo(1);
        await().atMost(Duration.ofSeconds(10)).until(() -> server().connectionCount() == 0);
        assertThat(server().connectionMemoryBytes()).isZero();
    }

    @Test
    void aClientThatSendsHalfAWritePayloadAndStallsIsDroppedWhileOthersAreServed() throws Exception {
        SocketAddress at = start(NbdServer.Config.defaults().withTimeouts(Duration.ZERO, SHORT, Duration.ZERO));
        NbdTestClient stalled = connect(at);
        stalled.go("disk", true);
        stalled.request(0, CMD_WRITE, 7, 0, 1 << 20);
        stalled.send(new byte[100_000]); // of 1 MiB, then nothing
        NbdTestClient halfHeader = connect(at);
        halfHeader.go("disk", true);
        halfHeader.send(new byte[] {0x25, 0x60}); // two bytes of a request header
        anotherClientIsServed(at, 2);
        assertThat(stalled.readToEnd()).as("no reply, the server hangs up").isEmpty();
        assertThat(halfHeader.readToEnd()).isEmpty();
        assertThat(timeouts()).isEqualTo(2);
        java.nio.ByteBuffer first = java.nio.ByteBuffer.allocate(BLOCK);
        disk.read(first, 0);
        assertThat(first.array()).as("nothing of the half payload was written").containsOnly(0);
        await().atMost(Duration.ofSeconds(10)).until(() -> server().connectionCount() == 0);
        assertThat(server().connectionMemoryBytes()).isZero();
    }

    @Test
    void anIdleClientBetweenRequestsIsNotDropped() throws Exception {
        SocketAddress at = start(NbdServer.Config.defaults().withTimeouts(SHORT, SHORT, SHORT));
        NbdTestClient idle = connect(at);
        idle.go("disk", true);
        Thread.sleep(3 * SHORT.toMillis());
        assertThat(idle.write(0, new byte[BLOCK], 0)).isZero();
        assertThat(timeouts()).isZero();
    }

    @Test
    void aClientThatNeverReadsItsRepliesIsDroppedAndStallsNoOtherClient() throws Exception {
        SocketAddress at = start(NbdServer.Config.defaults().withTimeouts(Duration.ZERO, Duration.ZERO,
                Duration.ofSeconds(2)));
        NbdTestClient deaf = connect(at);
        deaf.go("disk", true);
        for (int i = 0; i < 4; i++) {
            deaf.request(0, CMD_READ, 100 + i, 0, SIZE); // 64 MiB of replies nobody reads
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> server().bytesInFlight().availablePermits()
                < NbdServer.Config.DEFAULT_MAX_SERVER_BYTES_IN_FLIGHT);
        anotherClientIsServed(at, 3);
        await("the deaf client is dropped").atMost(Duration.ofSeconds(20))
                .until(() -> server().connectionCount() == 0);
        assertThat(timeouts()).isEqualTo(1);
        assertThat(server().connectionMemoryBytes()).isZero();
        await("its budget is given back").atMost(Duration.ofSeconds(10)).until(() ->
                server().bytesInFlight().availablePermits() == NbdServer.Config.DEFAULT_MAX_SERVER_BYTES_IN_FLIGHT);
    }

    @Test
    void overTheServerWideBudgetConnectionsWaitForRepliesToDrainInsteadOfAllocating() throws Exception {
        int budget = 32 << 20;
        SocketAddress at = start(NbdServer.Config.defaults().withMaxBytesInFlight(64 << 20, budget)
                .withTimeouts(Duration.ZERO, Duration.ZERO, Duration.ZERO));
        NbdTestClient hog = connect(at);
        hog.go("disk", true);
        hog.request(0, CMD_READ, 1, 0, SIZE);
        hog.request(0, CMD_READ, 2, 0, SIZE); // 32 MiB in flight, replies not read yet
        // Once failed here under load (2026-12-04, not reproduced since): say what the server did then.
        await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> assertThat(
                server().bytesInFlight().availablePermits())
                .as("server budget left with both READs unanswered (requests failed %d, short of memory %d,"
                                + " payload bytes allocated %d, connections %d)",
                        server().logs().failedRequests.total(), server().logs().memoryShortage.total(),
                        server().pool().allocatedBytes(), server().connectionCount())
                .isZero());

        NbdTestClient waiting = connect(at);
        waiting.go("other", true);
        CompletableFuture<byte[]> read = CompletableFuture.supplyAsync(() -> {
            try {
                return waiting.read(0, BLOCK);
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
        });
        Thread.sleep(500);
        assertThat(read).as("the second connection waits for budget").isNotDone();
        assertThat(server().pool().allocatedBytes()).as("payload buffers stay within the budget")
                .isLessThanOrEqualTo(2L * budget);

        List<NbdTestClient.Reply> replies = List.of(hog.readReply(), hog.readReply());
        assertThat(replies).extracting(NbdTestClient.Reply::cookie).containsExactlyInAnyOrder(1L, 2L);
        assertThat(replies).allSatisfy(r -> assertThat(r.errorCode()).isZero());
        assertThat(read.get(20, TimeUnit.SECONDS)).hasSize(BLOCK);
    }

    @Test
    void connectionsBeyondTheExportLimitAreRefusedWithAReasonWhileOtherExportsAreServed() throws Exception {
        SocketAddress at = start(NbdServer.Config.defaults().withMaxConnectionsPerExport(1));
        NbdTestClient first = connect(at);
        first.go("disk", true);

        NbdTestClient second = connect(at);
        second.start();
        assertThat(second.option(OPT_GO, NbdTestClient.infoRequest("disk"))).last().satisfies(r -> {
            assertThat(r.type()).isEqualTo(REP_ERR_POLICY);
            assertThat(new String(r.data(), StandardCharsets.UTF_8))
                    .isEqualTo("too many connections to export 'disk' (1, the limit); try again later");
        });
        assertThat(second.option(OPT_GO, NbdTestClient.infoRequest("other"))).last()
                .satisfies(r -> assertThat(r.type()).isEqualTo(REP_ACK));
        assertThat(second.read(0, BLOCK)).hasSize(BLOCK);

        NbdTestClient third = connect(at);
        third.start();
        third.sendOption(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
        assertThat(third.readToEnd()).as("EXPORT_NAME has no error reply: the server hangs up").isEmpty();
        assertThat(server().logs().refused.total()).isEqualTo(2);

        first.disconnect();
        await().atMost(Duration.ofSeconds(20)).until(() -> server().connectionCount() == 1);
        NbdTestClient fourth = connect(at);
        fourth.go("disk", true);
        assertThat(fourth.read(0, BLOCK)).hasSize(BLOCK);
    }

    @Test
    void closingTheServerWaitsOnceForAllStalledClientsNotOnceForEach() throws Exception {
        SocketAddress at = start(NbdServer.Config.defaults());
        for (int i = 0; i < 6; i++) {
            NbdTestClient deaf = connect(at);
            deaf.go("disk", true);
            for (int j = 0; j < 2; j++) {
                deaf.request(0, CMD_READ, j, 0, SIZE);
            }
        }
        await().atMost(Duration.ofSeconds(20)).until(() -> server().connectionCount() == 6);
        long start = System.nanoTime();
        server().close();
        Duration took = Duration.ofNanos(System.nanoTime() - start);
        // grace (2 s) + 2 s for all of them together; one after the other it took 6 x 4 s
        assertThat(took).isLessThan(Duration.ofSeconds(12));
        await("their sockets were closed under them").atMost(Duration.ofSeconds(5))
                .until(() -> server().connectionCount() == 0);
    }
}
