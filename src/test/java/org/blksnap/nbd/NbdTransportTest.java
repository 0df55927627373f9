package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;
import static org.blksnap.nbd.NbdHandshakeDescriptor.*;
import static org.blksnap.nbd.NbdTransmissionDescriptor.*;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.SocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.testing.ForwardingDevice;
import org.blksnap.nbd.NbdTestClient.Reply;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The server over a real transport. Subclasses pick the transport (TCP, Unix domain socket);
 * every test runs over each, like Netty's {@code EpollDomainSocketEchoTest extends EpollSocketEchoTest}.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
abstract class NbdTransportTest {
    static final int SIZE = 16 << 20;
    static final int BLOCK = 4096;

    @TempDir
    Path dir;
    TestExports exports;
    MemoryDevice disk;
    NbdServer server;
    SocketAddress address;
    final List<NbdTestClient> clients = new ArrayList<>();

    /** Starts listening on the transport under test. */
    abstract SocketAddress listen(NbdServer server, Path dir) throws IOException;

    @BeforeEach
    void start() throws IOException {
        exports = new TestExports();
        disk = new MemoryDevice("disk", SIZE);
        exports.add("disk", "", disk, false);
        exports.add("other", "", new MemoryDevice("other", SIZE), false);
        server = new NbdServer(exports, NbdServer.Config.defaults().withShutdownGrace(Duration.ofSeconds(2))
                .withLargeReads(NbdServer.LargeReads.SENDFILE));
        address = listen(server, dir);
    }

    @AfterEach
    void stop() throws IOException {
        for (NbdTestClient c : clients) {
            c.close();
        }
        server.close();
    }

    NbdTestClient connect() throws IOException {
        NbdTestClient c = NbdTestClient.connect(address);
        clients.add(c);
        return c;
    }

    @Test
    void dataRoundTripsWithSimpleAndStructuredReplies() throws IOException {
        NbdTestClient simple = connect();
        simple.go("disk", false);
        byte[] data = NbdProtocolTest.pattern(4 << 20, 11);
        assertThat(simple.write(BLOCK, data, 0)).isZero();
        NbdTestClient structured = connect();
        structured.go("disk", true);
        assertThat(structured.read(BLOCK, data.length)).isEqualTo(data);
        assertThat(simple.read(BLOCK, data.length)).isEqualTo(data);
    }

    @Test
    void largeStructuredReadsOfAFileGoOutFromItsPagesWithHolesAndZerosPastItsEnd() throws IOException {
        exports.sparseReads = true;
        exports.add(dir, "file", SIZE, false);
        NbdTestClient simple = connect();
        simple.go("file", false);
        byte[] data = NbdProtocolTest.pattern(1 << 20, 12);
        assertThat(simple.write(0, data, 0)).isZero();
        assertThat(simple.write(3 << 20, data, 0)).isZero();
        byte[] expected = new byte[4 << 20];
        System.arraycopy(data, 0, expected, 0, data.length);
        System.arraycopy(data, 0, expected, 3 << 20, data.length);

        NbdTestClient structured = connect();
        structured.go("file", true);
        long cookie = structured.nextCookie();
        structured.request(0, CMD_READ, cookie, 0, expected.length);
        List<Reply> chunks = structured.readAllReplies(cookie);
        assertThat(chunks).extracting(Reply::type).contains(REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE)
                .endsWith(REPLY_TYPE_NONE);
        assertThat(structured.read(0, expected.length)).isEqualTo(expected);
        assertThat(simple.read(0, expected.length)).isEqualTo(expected);

        // A file shorter than the device reads as zeros past its end, as through a buffer.
        try (FileChannel f = FileChannel.open(dir.resolve("file.img"), StandardOpenOption.WRITE)) {
            f.truncate((3 << 20) + (512 << 10));
        }
        byte[] tail = new byte[1 << 20];
        System.arraycopy(data, 0, tail, 0, 512 << 10);
        assertThat(structured.read(3 << 20, tail.length, CMD_FLAG_DF)).as("one buffered chunk").isEqualTo(tail);
        assertThat(structured.read(3 << 20, tail.length)).isEqualTo(tail);
    }

    @Test
    void aFileReadFailingWhileItsDataIsSentEndsTheReplyWithAnErrorAndTheConnectionGoesOn() throws IOException {
        BlockDevice file = BlockDevices.open(dir.resolve("bad.img"), SIZE, false);
        long badAt = (1 << 20) + 12345;
        FileChannel failing = new FailingFileChannel(FileChannel.open(dir.resolve("bad.img"), StandardOpenOption.READ),
                badAt);
        exports.add("bad", "", new ForwardingDevice(file) {
            @Override
            public Sender sender() {
                return (offsetBytes, lengthBytes, sink) -> sink.file(failing, offsetBytes, lengthBytes);
            }

            @Override
            public void close() throws IOException {
                failing.close();
                super.close();
            }
        }, false);
        NbdTestClient client = connect();
        client.go("bad", true);
        byte[] data = NbdProtocolTest.pattern(2 << 20, 13);
        assertThat(client.write(0, data, 0)).isZero();

        long cookie = client.nextCookie();
        client.request(0, CMD_READ, cookie, 0, 2 << 20);
        List<Reply> chunks = client.readAllReplies(cookie);
        Reply last = chunks.get(chunks.size() - 1);
        assertThat(last.type()).isEqualTo(REPLY_TYPE_ERROR_OFFSET);
        assertThat(last.errorCode()).isEqualTo(EIO);
        ByteBuffer p = ByteBuffer.wrap(last.payload());
        assertThat(p.getLong(p.capacity() - Long.BYTES)).as("offset of the error").isEqualTo(badAt);
        assertThat(chunks.get(0).payload()).as("the data chunk keeps its promised length").hasSize(8 + (2 << 20));

        assertThat(client.read(0, 1 << 20)).as("the stream is in sync").isEqualTo(Arrays.copyOf(data, 1 << 20));
    }

    /**
     * How a large READ of a file leaves ({@link LargeReadPath}): a lone client on this host (every
     * client here is one: a Unix socket or loopback TCP) gets it through a buffer by default, as with
     * COPY; SENDFILE hands the file's pages to the kernel. The same bytes every way.
     */
    @Test
    void largeReadsOfAFileGoThroughABufferForALoneLocalClientUnlessSendfileIsPinned() throws Exception {
        BlockDevice file = BlockDevices.open(dir.resolve("path.img"), SIZE, false);
        try {
            AtomicInteger sends = new AtomicInteger();
            exports.add("path", "", new ForwardingDevice(file) {
                @Override
                public Sender sender() {
                    Sender real = file.sender();
                    return (offsetBytes, lengthBytes, sink) -> {
                        sends.incrementAndGet();
                        real.send(offsetBytes, lengthBytes, sink);
                    };
                }
            }, false);
            byte[] data = NbdProtocolTest.pattern(1 << 20, 21);
            NbdTestClient writer = connect();
            writer.go("path", true);
            assertThat(writer.write(0, data, 0)).isZero();

            Map<NbdServer.LargeReads, Integer> sendsByMode = new EnumMap<>(NbdServer.LargeReads.class);
            for (NbdServer.LargeReads mode : NbdServer.LargeReads.values()) {
                NbdServer s = new NbdServer(exports, NbdServer.Config.defaults().withLargeReads(mode));
                try {
                    NbdTestClient c = NbdTestClient.connect(
                            listen(s, Files.createDirectories(dir.resolve("mode-" + mode))));
                    clients.add(c);
                    c.go("path", true);
                    int before = sends.get();
                    assertThat(c.read(0, data.length)).as("%s: the data", mode).isEqualTo(data);
                    sendsByMode.put(mode, sends.get() - before);
                    await(mode + ": no read left counted (the reply goes out before the count drops)")
                            .atMost(Duration.ofSeconds(10)).until(() -> s.largeReadPath().readers() == 0);
                    boolean sent = mode == NbdServer.LargeReads.SENDFILE;
                    assertThat(sent ? s.largeReadsBySendfile() : s.largeReadsThroughBuffer())
                            .as("%s: the one READ counted on the path it took", mode).isEqualTo(1);
                    assertThat(sent ? s.largeReadsThroughBuffer() : s.largeReadsBySendfile()).isZero();
                } finally {
                    s.close();
                }
            }
            assertThat(sendsByMode).as("sender calls per mode")
                    .containsEntry(NbdServer.LargeReads.AUTO, 0)
                    .containsEntry(NbdServer.LargeReads.COPY, 0);
            assertThat(sendsByMode.get(NbdServer.LargeReads.SENDFILE)).isPositive();
        } finally {
            file.close();
        }
    }

    /**
     * A device whose reads take milliseconds (a disk): a request alone in flight runs on the
     * connection's reader thread (a hand-off would only add wake-ups), and requests that are in
     * flight together run at the same time on platform threads, not on virtual threads that would pin
     * their carriers while they wait in the kernel.
     */
    @Test
    void slowSmallRequestsRunOnTheReaderWhenAloneAndTogetherOnPlatformThreads() throws Exception {
        List<Thread> readers = new CopyOnWriteArrayList<>();
        AtomicInteger running = new AtomicInteger();
        AtomicInteger mostAtOnce = new AtomicInteger();
        exports.add("slow", "", new ForwardingDevice(disk) {
            @Override
            public void read(ByteBuffer dst, long offsetBytes) throws IOException {
                readers.add(Thread.currentThread());
                mostAtOnce.accumulateAndGet(running.incrementAndGet(), Math::max);
                try {
                    waitLikeADisk();
                } finally {
                    running.decrementAndGet();
                }
                super.read(dst, offsetBytes);
            }
        }, false);
        NbdTestClient c = connect();
        c.go("slow", true);
        byte[] data = NbdProtocolTest.pattern(BLOCK, 7);
        assertThat(c.write(0, data, 0)).isZero();

        for (int i = 0; i < 12; i++) {
            assertThat(c.read(0, BLOCK)).isEqualTo(data);
        }
        assertThat(readers).as("depth 1: every read ran on the reader thread, the slow ones too")
                .allSatisfy(t -> assertThat(t.getName()).startsWith("nbd-conn-"));

        readers.clear();
        int n = 16;
        CompletableFuture<List<Reply>> replies = CompletableFuture.supplyAsync(() -> readN(c, n));
        for (int i = 0; i < n; i++) {
            c.request(0, CMD_READ, 3_000_000 + i, 0, BLOCK);
        }
        assertThat(replies.get(30, TimeUnit.SECONDS)).hasSize(n)
                .allSatisfy(r -> assertThat(Arrays.copyOfRange(r.payload(), 8, r.payload().length)).isEqualTo(data));
        assertThat(readers).filteredOn(t -> t.getName().startsWith("nbd-slow-") && !t.isVirtual())
                .as("reads in flight together ran on platform threads").hasSizeGreaterThanOrEqualTo(n / 2);
        assertThat(mostAtOnce.get()).as("reads in flight together ran at the same time").isGreaterThanOrEqualTo(2);
    }

    /** Blocks for 3 ms, as a request to a disk does (slower than the inline limit). */
    private static void waitLikeADisk() throws InterruptedIOException {
        try {
            Thread.sleep(3);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException();
        }
    }

    /**
     * A slow device's WRITEs alone in flight: a small one runs on the reader, a 1 MiB one (whose
     * payload was read past the input buffer, so what follows may be waiting in the client's socket)
     * on another thread, and the reader goes on.
     */
    @Test
    void aLargeWriteAloneInFlightRunsOffTheReaderAndASmallOneOnIt() throws Exception {
        List<Thread> writers = new CopyOnWriteArrayList<>();
        exports.add("slow", "", new ForwardingDevice(disk) {
            @Override
            public void write(ByteBuffer src, long offsetBytes) throws IOException {
                writers.add(Thread.currentThread());
                waitLikeADisk();
                super.write(src, offsetBytes);
            }
        }, false);
        NbdTestClient c = connect();
        c.go("slow", true);
        byte[] small = NbdProtocolTest.pattern(BLOCK, 8);
        for (int i = 0; i < 4; i++) { // slower than the inline limit from the first on
            assertThat(c.write((long) i * BLOCK, small, 0)).isZero();
        }
        assertThat(writers).as("small writes alone ran on the reader").hasSize(4)
                .allSatisfy(t -> assertThat(t.getName()).startsWith("nbd-conn-"));
        writers.clear();
        byte[] large = NbdProtocolTest.pattern(1 << 20, 9);
        assertThat(c.write(1 << 20, large, 0)).isZero();
        assertThat(writers).as("a 1 MiB write alone ran off the reader").hasSize(1)
                .allSatisfy(t -> assertThat(t.getName()).doesNotStartWith("nbd-conn-"));
        assertThat(c.read(1 << 20, large.length)).isEqualTo(large);
    }

    /**
     * A device's sender that hands its first MiB as bytes (read into the scratch buffer), the rest as
     * ranges of its file, and fails at a given offset: whatever was handed before the failure stays
     * in the reply, which ends with the device's error at the failing offset.
     */
    @Test
    void aDeviceFailingPartWayThroughItsSendEndsTheReplyWithItsErrorAtThatOffsetAndTheStreamStaysInSync()
            throws IOException {
        BlockDevice file = BlockDevices.open(dir.resolve("mixed.img"), SIZE, false);
        BlockDevice.Sender fileSender = file.sender();
        long failAt = (1 << 20) + 4096 + 100;
        java.util.concurrent.atomic.AtomicReference<Exception> failure = new java.util.concurrent.atomic.AtomicReference<>();
        exports.add("mixed", "", new ForwardingDevice(file) {
            @Override
            public Sender sender() {
                return (offset, length, sink) -> {
                    long end = offset + length;
                    long stop = Math.min(end, Math.max(offset, failAt));
                    long bytesEnd = Math.min(stop, offset + (1 << 20));
                    if (bytesEnd > offset) {
                        ByteBuffer scratch = sink.scratch();
                        scratch.limit((int) (bytesEnd - offset));
                        file.read(scratch, offset);
                        sink.bytes(scratch.flip());
                    }
                    if (stop > bytesEnd) {
                        fileSender.send(bytesEnd, (int) (stop - bytesEnd), sink);
                    }
                    if (stop < end) {
                        Exception e = failure.get();
                        if (e instanceof IOException io) {
                            throw io;
                        }
                        throw (RuntimeException) e;
                    }
                };
            }
        }, false);
        NbdTestClient client = connect();
        client.go("mixed", true);
        byte[] data = NbdProtocolTest.pattern(2 << 20, 14);
        assertThat(client.write(0, data, 0)).isZero();

        failure.set(new IOException("test: the device fails here"));
        List<Reply> chunks = readReplies(client, 0, 2 << 20);
        assertThat(chunks).extracting(Reply::type).containsExactly(REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_ERROR_OFFSET);
        assertThat(chunks.get(0).payload()).as("the data chunk keeps its promised length").hasSize(8 + (2 << 20));
        assertThat(Arrays.copyOfRange(chunks.get(0).payload(), 8, 8 + (int) failAt)).as("what was handed")
                .isEqualTo(Arrays.copyOf(data, (int) failAt));
        assertThat(chunks.get(1).errorCode()).isEqualTo(EIO);
        assertThat(chunks.get(1).errorMessage()).isEqualTo("read at offset " + failAt + " failed: test: the device fails here");
        ByteBuffer p = ByteBuffer.wrap(chunks.get(1).payload());
        assertThat(p.getLong(p.capacity() - Long.BYTES)).as("offset of the error").isEqualTo(failAt);

        failure.set(new org.blksnap.engine.BlksnapException(org.blksnap.engine.Errno.ENODEV, "test: removed"));
        chunks = readReplies(client, 1 << 20, 1 << 20);
        assertThat(chunks).extracting(Reply::type).containsExactly(REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_ERROR_OFFSET);
        assertThat(chunks.get(1).errorCode()).as("the engine's errno, mapped as for any request").isEqualTo(ESHUTDOWN);

        chunks = readReplies(client, failAt + 4096, 1 << 20);
        assertThat(chunks).as("nothing was handed: an ordinary error reply").extracting(Reply::type)
                .containsExactly(REPLY_TYPE_ERROR);
        assertThat(chunks.get(0).errorCode()).isEqualTo(ESHUTDOWN);

        assertThat(client.read(0, 1 << 20)).as("the stream is in sync").isEqualTo(Arrays.copyOf(data, 1 << 20));
    }

    @Test
    void writesNotAlignedToTheMinimumBlockSizeAreRefusedWithEinvalAndWriteNothing() throws Exception {
        exports.add("aligned", "", new MemoryDevice("aligned", SIZE), false);
        exports.minimumBlockBytes = 512;
        NbdTestClient client = connect();
        client.go("aligned", true);
        byte[] data = NbdProtocolTest.pattern(4096, 21);
        assertThat(client.write(0, data, 0)).isZero();
        byte[] other = NbdProtocolTest.pattern(512, 22);
        assertThat(client.write(100, other, 0)).as("offset not aligned").isEqualTo(EINVAL);
        assertThat(client.write(512, Arrays.copyOf(other, 100), 0)).as("length not aligned").isEqualTo(EINVAL);
        assertThat(client.read(0, data.length)).as("nothing written, the stream in sync").isEqualTo(data);
    }

    /**
     * A WRITE's payload is read whole before a byte of it reaches the device, so a client that leaves
     * (or a daemon killed) part-way through a payload leaves every sector as it was: no sector holds
     * half of an unacknowledged write. (Reading payloads straight from the socket into a mapping of a
     * tmpfs device, tried in the ninth session, broke this and was removed.)
     */
    @Test
    void aClientThatLeavesInsideAPayloadWritesNothingAndEndsOnlyItsOwnConnection() throws Exception {
        exports.add("cut", "", new MemoryDevice("cut", SIZE), false);
        NbdTestClient leaving = connect();
        leaving.go("cut", true);
        byte[] old = NbdProtocolTest.pattern(1 << 20, 23);
        assertThat(leaving.write(0, old, 0)).isZero();
        byte[] data = NbdProtocolTest.pattern(1 << 20, 24);
        leaving.request(0, CMD_WRITE, leaving.nextCookie(), 0, data.length);
        leaving.send(ByteBuffer.wrap(data, 0, 768 << 10));
        leaving.close();
        await().atMost(Duration.ofSeconds(10)).until(() -> server.connectionCount() == 0);

        NbdTestClient next = connect();
        next.go("cut", true);
        assertThat(next.read(0, old.length)).as("no byte of the cut payload landed").isEqualTo(old);
        assertThat(next.write(0, data, 0)).isZero();
        assertThat(next.read(0, data.length)).isEqualTo(data);
    }

    private static List<Reply> readReplies(NbdTestClient client, long offset, int length) throws IOException {
        long cookie = client.nextCookie();
        client.request(0, CMD_READ, cookie, offset, length);
        return client.readAllReplies(cookie);
    }

    @Test
    void aFlushOnOneConnectionCoversWritesOfAnotherBecauseTheyShareTheDevice() throws IOException {
        NbdTestClient a = connect();
        assertThat(a.go("disk", true).flags() & FLAG_CAN_MULTI_CONN).isNotZero();
        NbdTestClient b = connect();
        b.go("disk", true);
        assertThat(a.write(0, new byte[] {1, 2, 3, 4}, 0)).isZero();
        assertThat(b.command(CMD_FLUSH, 0, 0, 0)).isZero();
        assertThat(b.read(0, 4)).containsExactly(1, 2, 3, 4);
    }

    @Test
    void manyRequestsInFlightOnOneConnectionGetWholeRepliesMatchedByCookie() throws Exception {
        disk.jitterMicros = 300;
        NbdTestClient c = connect();
        c.go("disk", true);
        int n = 512;
        Map<Long, Integer> readBlock = new HashMap<>();
        // First write n distinct blocks, all in flight at once, then read them all back in flight at once.
        CompletableFuture<List<Reply>> writeReplies = CompletableFuture.supplyAsync(() -> readN(c, n));
        for (int i = 0; i < n; i++) {
            c.writeRequest(0, 1_000_000 + i, (long) i * BLOCK, NbdProtocolTest.pattern(BLOCK, i));
        }
        List<Reply> writes = writeReplies.get(30, TimeUnit.SECONDS);
        assertThat(writes).allSatisfy(r -> assertThat(r.errorCode()).isZero());
        assertThat(writes).extracting(Reply::cookie).doesNotHaveDuplicates().hasSize(n);
        CompletableFuture<List<Reply>> readReplies = CompletableFuture.supplyAsync(() -> readN(c, n));
        for (int i = 0; i < n; i++) {
            long cookie = 2_000_000 + i;
            readBlock.put(cookie, i);
            c.request(0, CMD_READ, cookie, (long) i * BLOCK, BLOCK);
        }
        List<Reply> reads = readReplies.get(30, TimeUnit.SECONDS);
        assertThat(reads).extracting(Reply::cookie).doesNotHaveDuplicates().hasSize(n);
        boolean outOfOrder = false;
        long previous = 0;
        for (Reply r : reads) {
            assertThat(r.type()).isEqualTo(REPLY_TYPE_OFFSET_DATA);
            assertThat(r.done()).isTrue();
            int block = readBlock.get(r.cookie());
            ByteBuffer p = ByteBuffer.wrap(r.payload());
            assertThat(p.getLong(0)).isEqualTo((long) block * BLOCK);
            assertThat(java.util.Arrays.copyOfRange(r.payload(), 8, r.payload().length))
                    .isEqualTo(NbdProtocolTest.pattern(BLOCK, block));
            outOfOrder |= r.cookie() < previous;
            previous = r.cookie();
        }
        assertThat(outOfOrder).as("replies overtook each other").isTrue();
    }

    private static List<Reply> readN(NbdTestClient c, int n) {
        List<Reply> all = new ArrayList<>();
        try {
            for (int i = 0; i < n; i++) {
                all.add(c.readReply());
            }
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
        return all;
    }

    @Test
    void closeExportEndsItsConnectionsWithRequestsInFlightWithoutHanging() throws Exception {
        NbdTestClient victim = connect();
        victim.go("disk", false);
        NbdTestClient bystander = connect();
        bystander.go("other", false);
        CountDownLatch gate = new CountDownLatch(1);
        disk.readGate = gate;
        for (int i = 0; i < 8; i++) {
            victim.request(0, CMD_READ, 100 + i, 0, BLOCK);
        }
        awaitReadStuckInTheDevice();
        CompletableFuture<Integer> closed = new CompletableFuture<>();
        Thread closer = Thread.ofVirtual().start(() -> closed.complete(server.closeExport("disk")));
        // closeExport's only timed wait is for the connection to end, which needs the read to finish.
        await("closeExport waits for the read in flight").atMost(Duration.ofSeconds(10))
                .until(() -> closer.getState() == Thread.State.TIMED_WAITING);
        gate.countDown();
        assertThat(closed.get(20, TimeUnit.SECONDS)).isEqualTo(1);
        // Every request got a reply (success or ESHUTDOWN) or the stream ended; never a hang.
        List<Integer> errors = new ArrayList<>();
        try {
            for (int i = 0; i < 8; i++) {
                errors.add(victim.readReply().errorCode());
            }
        } catch (IOException e) {
            // end of stream: acceptable
        }
        assertThat(errors).allSatisfy(e -> assertThat(e).isIn(0, ESHUTDOWN));
        assertThat(victim.readToEnd()).isEmpty();
        assertThat(bystander.read(0, 16)).hasSize(16);
        assertThat(server.connectionCount()).isEqualTo(1);
    }

    /**
     * A client whose handshake opened the export just before closeExport is not yet in transmission,
     * so closeExport's scan cannot see it; it must still not be left serving the export that went
     * away: it ends as soon as it enters transmission.
     */
    @Test
    void aConnectionThatOpenedTheExportDuringItsHandshakeEndsWhenItWasClosedMeanwhile() throws Exception {
        NbdTestClient late = connect();
        exports.openGate = new CountDownLatch(1);
        CompletableFuture<Void> go = CompletableFuture.runAsync(() -> {
            try {
                late.go("disk", true);
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        await("the handshake opens the export").atMost(Duration.ofSeconds(10)).until(() -> exports.opensAtGate.get() >= 1);
        assertThat(server.closeExport("disk")).as("not in transmission yet").isZero();
        exports.openGate.countDown();
        go.get(20, TimeUnit.SECONDS);
        CompletableFuture<byte[]> rest = CompletableFuture.supplyAsync(() -> {
            try {
                return late.readToEnd();
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        assertThat(rest.get(20, TimeUnit.SECONDS)).as("ended right after the handshake").isEmpty();
        NbdTestClient bystander = connect();
        exports.openGate = null;
        bystander.go("disk", true);
        assertThat(bystander.read(0, 16)).as("a connection opened after the close is served").hasSize(16);
    }

    @Test
    void closeExportEndsConnectionsEvenWhenTheDeviceNeverAnswers() throws Exception {
        NbdTestClient victim = connect();
        victim.go("disk", true);
        disk.readGate = new CountDownLatch(1); // opened only after the test: the read would answer in 30 s
        victim.request(0, CMD_READ, 7, 0, BLOCK);
        awaitReadStuckInTheDevice();
        long start = System.nanoTime();
        assertThat(server.closeExport("disk")).isEqualTo(1);
        victim.readToEnd();
        assertThat(Duration.ofNanos(System.nanoTime() - start))
                .as("the client sees the end of the stream after the grace (2 s) + 2 s, not when the device answers")
                .isLessThan(Duration.ofSeconds(15));
        disk.readGate.countDown();
    }

    private void awaitReadStuckInTheDevice() {
        await("a read waits in the device").atMost(Duration.ofSeconds(10)).until(() -> disk.readsAtGate.get() == 1);
    }

    @Test
    void closingTheServerEndsEveryConnectionAndStopsListening() throws Exception {
        NbdTestClient inTransmission = connect();
        inTransmission.go("disk", true);
        NbdTestClient inHandshake = connect();
        inHandshake.start();
        server.close();
        assertThat(inTransmission.readToEnd()).isEmpty();
        byte[] rest = inHandshake.readToEnd();
        assertThat(rest).isEmpty();
        assertThat(server.connectionCount()).isZero();
        assertThatThrownBy(() -> NbdTestClient.connect(address).close()).isInstanceOf(IOException.class);
    }

    @Test
    void malformedInputFromSomeClientsNeverDisturbsAnother() throws Exception {
        NbdTestClient good = connect();
        good.go("disk", true);
        byte[] data = NbdProtocolTest.pattern(BLOCK, 99);
        assertThat(good.write(0, data, 0)).isZero();

        List<ThrowingConsumer> attacks = List.of(
                c -> c.send(new byte[] {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1', '\r', '\n'}),
                c -> {
                    c.readGreeting();
                    c.sendClientFlags(0xffffffff);
                },
                c -> {
                    c.start();
                    c.sendOptionHeader(0xdeadbeefL, OPT_GO, 10);
                },
                c -> {
                    c.start();
                    c.sendOptionHeader(IHAVEOPT, OPT_GO, 0xffffffff);
                },
                c -> {
                    c.start();
                    for (int i = 0; i < 50; i++) {
                        c.sendOption(1000 + i, new byte[i]);
                    }
                    c.sendOption(OPT_INFO, new byte[] {0, 0, 0x10, 0, 1, 2});
                },
                c -> {
                    c.go("disk", true);
                    c.request(0, CMD_READ, 1, SIZE, BLOCK);
                    c.request(0, CMD_WRITE, 2, 0, 0xffffffffL); // claims 4 GiB of payload, then stops
                    c.send(new byte[1000]);
                },
                c -> {
                    c.go("disk", false);
                    for (int t = 8; t < 40; t++) {
                        c.request(0xffff, t, t, Long.MAX_VALUE, 0xffffffffL);
                    }
                    c.send(new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
                        25, 26, 27, 28});
                },
                NbdTestClient::close);
        for (ThrowingConsumer attack : attacks) {
            NbdTestClient bad = NbdTestClient.connect(address);
            try {
                attack.accept(bad);
            } catch (IOException e) {
                // the server may already have hung up
            } finally {
                bad.close();
            }
            assertThat(good.read(0, BLOCK)).isEqualTo(data);
        }
        await().atMost(Duration.ofSeconds(20)).until(() -> server.connectionCount() == 1);
        assertThat(good.read(0, BLOCK)).isEqualTo(data);
    }

    @Test
    void everyConnectionFreesItsBuffersWhenItEndsWhicheverWayItEnds() throws Exception {
        NbdTestClient good = connect();
        good.go("disk", true);
        // The reply batch is allocated when the server's side enters transmission, just after the GO reply.
        await("one connection in transmission holds its 328 KiB").atMost(Duration.ofSeconds(20))
                .until(() -> server.connectionMemoryBytes() == NbdServer.CONNECTION_BYTES);

        List<ThrowingConsumer> endings = List.of(
                c -> {
                    c.go("disk", true);
                    c.disconnect(); // NBD_CMD_DISC
                },
                c -> {
                    c.start();
                    c.option(OPT_ABORT, new byte[0]);
                },
                c -> {
                    c.readGreeting();
                    c.sendClientFlags(0x80); // unknown client flag: handshake failure
                },
                c -> {
                    c.go("disk", true);
                    c.send(new byte[28]); // bad request magic: protocol error
                },
                c -> {
                    c.go("disk", false);
                    c.request(0, CMD_WRITE, 5, 0, 1 << 20);
                    c.send(new byte[4096]); // the client dies in the middle of a payload
                },
                c -> {
                    c.go("disk", true);
                    c.request(0, CMD_READ, 6, 0, BLOCK); // then reset without reading the reply
                });
        for (ThrowingConsumer ending : endings) {
            NbdTestClient c = NbdTestClient.connect(address);
            try {
                ending.accept(c);
            } finally {
                c.close();
            }
        }
        // ended by the server: export removed, then server shutdown, one in transmission and one in handshake
        NbdTestClient onOther = connect();
        onOther.go("other", false);
        assertThat(server.closeExport("other")).isEqualTo(1);
        assertThat(onOther.readToEnd()).isEmpty();
        await("the buffers of every ended connection are freed").atMost(Duration.ofSeconds(20))
                .until(() -> server.connectionMemoryBytes() == NbdServer.CONNECTION_BYTES);
        assertThat(good.read(0, BLOCK)).hasSize(BLOCK);

        NbdTestClient inHandshake = connect();
        inHandshake.start();
        await().atMost(Duration.ofSeconds(20)).until(() -> server.connectionCount() == 2);
        assertThat(server.connectionMemoryBytes())
                .as("a connection in handshake holds no reply batch")
                .isEqualTo(NbdServer.CONNECTION_BYTES + ConnectionMemory.HANDSHAKE_BYTES);
        assertThat(server.pool().retainedBytes()).as("payload buffers kept for reuse").isPositive();
        server.close();
        assertThat(server.connectionCount()).isZero();
        assertThat(server.connectionMemoryBytes()).isZero();
        assertThat(server.nativeMemoryBytes()).as("a closed server holds no native memory, kept buffers included")
                .isZero();
    }

    @Test
    void whenDirectMemoryRunsOutRequestsGetEnomemAndTheConnectionGoesOnInSync() throws Exception {
        NbdServer tight = new NbdServer(exports, NbdServer.Config.defaults(), new BufferPool(2 << 20));
        try {
            SocketAddress at = listen(tight, java.nio.file.Files.createDirectories(dir.resolve("tight")));
            NbdTestClient c = NbdTestClient.connect(at);
            clients.add(c);
            c.go("disk", false);
            byte[] small = NbdProtocolTest.pattern(BLOCK, 5);
            assertThat(c.write(0, small, 0)).isZero();
            // 4 MiB does not fit under the 2 MiB the pool may allocate: the payload is read and dropped.
            assertThat(c.write(BLOCK, NbdProtocolTest.pattern(4 << 20, 6), 0)).isEqualTo(ENOMEM);
            assertThat(c.command(CMD_READ, 0, 0, 4 << 20)).isEqualTo(ENOMEM);
            assertThat(c.read(0, BLOCK)).as("the stream is still in sync").isEqualTo(small);
            NbdTestClient structured = NbdTestClient.connect(at);
            clients.add(structured);
            structured.go("disk", true, "base:allocation");
            assertThat(structured.read(0, BLOCK)).isEqualTo(small);
            assertThat(structured.blockStatus(0, BLOCK, 0)).isNotEmpty();
        } finally {
            tight.close();
        }
    }

    @Test
    void connectionsBeyondTheLimitAreRefusedWithAReasonAndTheNextOneIsServed() throws Exception {
        NbdServer limited = new NbdServer(exports, NbdServer.Config.defaults().withMaxConnections(1));
        try {
            SocketAddress at = listen(limited, java.nio.file.Files.createDirectories(dir.resolve("limited")));
            NbdTestClient first = NbdTestClient.connect(at);
            clients.add(first);
            first.go("disk", true);

            NbdTestClient second = NbdTestClient.connect(at);
            clients.add(second);
            second.start();
            List<NbdTestClient.OptionReply> sr = second.option(OPT_STRUCTURED_REPLY, new byte[0]);
            assertThat(sr).singleElement().satisfies(r -> assertThat(r.type()).isEqualTo(REP_ERR_POLICY));
            List<NbdTestClient.OptionReply> go = second.option(OPT_GO, NbdTestClient.infoRequest("disk"));
            assertThat(go).singleElement().satisfies(r -> {
                assertThat(r.type()).isEqualTo(REP_ERR_POLICY);
                assertThat(new String(r.data(), java.nio.charset.StandardCharsets.UTF_8))
                        .contains("too many connections").contains("1 connections already");
            });
            assertThat(second.option(OPT_ABORT, new byte[0])).singleElement()
                    .satisfies(r -> assertThat(r.type()).isEqualTo(REP_ACK));
            assertThat(second.readToEnd()).isEmpty();

            NbdTestClient third = NbdTestClient.connect(at);
            clients.add(third);
            third.start();
            third.sendOption(OPT_EXPORT_NAME, "disk".getBytes(java.nio.charset.StandardCharsets.UTF_8));
            assertThat(third.readToEnd()).as("EXPORT_NAME has no error reply: the refusal hangs up").isEmpty();
            assertThat(limited.connectionCount()).isEqualTo(1);

            first.disconnect();
            await().atMost(Duration.ofSeconds(20)).until(() -> limited.connectionCount() == 0);
            NbdTestClient fourth = NbdTestClient.connect(at);
            clients.add(fourth);
            fourth.go("disk", true);
            assertThat(fourth.read(0, BLOCK)).hasSize(BLOCK);
        } finally {
            limited.close();
        }
    }

    @FunctionalInterface
    interface ThrowingConsumer {
        void accept(NbdTestClient c) throws IOException;
    }
}
