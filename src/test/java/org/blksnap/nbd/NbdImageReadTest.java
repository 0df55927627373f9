package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.nbd.NbdTransmissionDescriptor.CMD_FLAG_DF;

import java.io.IOException;
import java.net.SocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Params;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.diff.StorageFaults;
import org.blksnap.engine.module.BlksnapModule;
import org.blksnap.engine.scenario.ShmTempDir;
import org.blksnap.engine.testing.FaultPlan;
import org.blksnap.engine.testing.ForwardingDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Snapshot images read over NBD through their sender: copied chunks go out as ranges of the
 * difference storage (sendfile), chunks not copied as bytes the image read itself. The reads are
 * structured and at least {@link RequestHandler#SEND_FILE_MIN_BYTES}, so they take that path; every
 * byte must be the take-time byte (or the image's own write), whatever the live device does
 * meanwhile. Subclasses pick the transport: sendfile hands page references to a TCP socket, and to a
 * Unix socket on Linux 6.x (MSG_SPLICE_PAGES), which the receiver copies later.
 *
 * <p>The engine is real (in process); 32 MiB devices in 64 KiB chunks on /dev/shm.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
abstract class NbdImageReadTest {
    private static final int SIZE = 32 << 20;
    private static final int CHUNK = 64 << 10;

    @TempDir(factory = ShmTempDir.class)
    Path dir;
    private Blksnap engine;
    private BlockDevice live;
    private TestExports exports;
    private NbdServer server;
    private SocketAddress address;
    private final List<NbdTestClient> clients = new ArrayList<>();
    /** What the image's sender handed through the server's sink, over the whole test. */
    private final AtomicLong filePieces = new AtomicLong();
    private final AtomicLong bytePieces = new AtomicLong();

    /** Starts listening on the transport under test. */
    abstract SocketAddress listen(NbdServer server, Path dir) throws IOException;

    @BeforeEach
    void start() throws IOException {
        Params p = new Params();
        p.set("chunk_minimum_shift", 16);
        p.set("diff_storage_minimum", 262144);
        engine = BlksnapModule.init(p);
        engine.addDevice("d0", BlockDevices.open(dir.resolve("d0.img"), SIZE, false));
        live = engine.device("d0");
        write(live, 0, pattern(1, SIZE));
        exports = new TestExports();
        exports.add("live", "", live, false);
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
        engine.close();
    }

    private NbdTestClient connect(String export) throws IOException {
        NbdTestClient c = NbdTestClient.connect(address);
        clients.add(c);
        c.go(export, true);
        return c;
    }

    /** Takes a snapshot of d0 and exports its image as "img" (replacing an earlier one). */
    private UUID takeAndExport(String tag) {
        UUID id = engine.snapshotCreate(List.of("d0"));
        engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff-" + tag), SIZE + (8 << 20)));
        engine.snapshotTake(id, TakeHooks.NONE);
        BlockDevice image = engine.image(engine.snapshotCollectImages(id).get(0).image());
        exports.remove("img");
        exports.add("img", "", new CountingSender(image), false);
        return id;
    }

    @Test
    void readsOfCopiedNotCopiedAndImageWrittenChunksReturnTheTakeTimeBytesAndTheImagesWrites() throws IOException {
        byte[] expected = read(live, 0, SIZE);
        takeAndExport("a");
        NbdTestClient img = connect("img");
        NbdTestClient liveClient = connect("live");
        // Copied: written on the live device after take (some twice, one only in part).
        assertThat(liveClient.write(2L * CHUNK, pattern(2, 4 * CHUNK), 0)).isZero();
        assertThat(liveClient.write(3L * CHUNK, pattern(3, CHUNK), 0)).isZero();
        assertThat(liveClient.write(40L * CHUNK + 5000, pattern(4, 3000), 0)).isZero();
        write(live, 100L * CHUNK, pattern(5, 20 * CHUNK));
        // Written through the image (cached chunks), across a chunk border too.
        byte[] imageWrite = pattern(6, 4096);
        assertThat(img.write(8L * CHUNK + 1000, imageWrite, 0)).isZero();
        System.arraycopy(imageWrite, 0, expected, 8 * CHUNK + 1000, imageWrite.length);
        byte[] across = pattern(7, CHUNK);
        assertThat(img.write(10L * CHUNK + CHUNK / 2, across, 0)).isZero();
        System.arraycopy(across, 0, expected, 10 * CHUNK + CHUNK / 2, across.length);

        for (int off = 0; off < SIZE; off += 1 << 20) {
            assertThat(img.read(off, 1 << 20)).as("1 MiB at %d", off).isEqualTo(Arrays.copyOfRange(expected, off, off + (1 << 20)));
        }
        long[][] ranges = {{2L * CHUNK - 12345, 3 << 20}, {7L * CHUNK + 1, 5 * CHUNK - 2}, {40L * CHUNK + 4000, 64 << 10},
            {99L * CHUNK + 512, 22 * CHUNK}, {SIZE - (1 << 20) - 777, (1 << 20) + 777}};
        for (long[] r : ranges) {
            int at = (int) r[0];
            int length = (int) r[1];
            assertThat(img.read(at, length)).as("%d bytes at %d", length, at)
                    .isEqualTo(Arrays.copyOfRange(expected, at, at + length));
        }
        assertThat(filePieces.get()).as("copied chunks went out as ranges of the storage").isPositive();
        assertThat(bytePieces.get()).as("chunks not copied went out as bytes").isPositive();
        // The buffered path (DF, small reads) agrees.
        assertThat(img.read(2L * CHUNK - 100, 3 * CHUNK, CMD_FLAG_DF)).isEqualTo(Arrays.copyOfRange(expected,
                2 * CHUNK - 100, 5 * CHUNK - 100));
        assertThat(img.read(8L * CHUNK, 8192)).isEqualTo(Arrays.copyOfRange(expected, 8 * CHUNK, 8 * CHUNK + 8192));
    }

    @Test
    void aStorageReadFailingMidReplyEndsItWithEioAtTheFailingOffsetAndTheConnectionGoesOn() throws IOException {
        byte[] expected = read(live, 0, SIZE);
        takeAndExport("s");
        write(live, 4L * CHUNK, pattern(8, 4 * CHUNK)); // chunks 4-7 copied
        Path storage = dir.resolve("diff-s").toAbsolutePath().normalize();
        NbdTestClient img = connect("img");
        try {
            StorageFaults.of(storage).fail(FaultPlan.Op.READ);
            long cookie = img.nextCookie();
            img.request(0, NbdTransmissionDescriptor.CMD_READ, cookie, 2L * CHUNK, 6 * CHUNK);
            List<NbdTestClient.Reply> chunks = img.readAllReplies(cookie);
            assertThat(chunks).extracting(NbdTestClient.Reply::type).containsExactly(
                    NbdTransmissionDescriptor.REPLY_TYPE_OFFSET_DATA, NbdTransmissionDescriptor.REPLY_TYPE_ERROR_OFFSET);
            byte[] data = chunks.get(0).payload();
            assertThat(data).as("the data chunk keeps its promised length").hasSize(8 + 6 * CHUNK);
            assertThat(Arrays.copyOfRange(data, 8, 8 + 2 * CHUNK)).as("the chunks not copied, before the failure")
                    .isEqualTo(Arrays.copyOfRange(expected, 2 * CHUNK, 4 * CHUNK));
            NbdTestClient.Reply error = chunks.get(1);
            assertThat(error.errorCode()).isEqualTo(NbdTransmissionDescriptor.EIO);
            assertThat(error.errorMessage()).startsWith("read at offset " + 4 * CHUNK
                    + " failed: difference storage read of " + storage);
            ByteBuffer p = ByteBuffer.wrap(error.payload());
            assertThat(p.getLong(p.capacity() - Long.BYTES)).as("offset of the error").isEqualTo(4L * CHUNK);
        } finally {
            StorageFaults.forget(storage);
        }
        assertThat(img.read(2L * CHUNK, 6 * CHUNK)).as("the stream is in sync and the snapshot intact")
                .isEqualTo(Arrays.copyOfRange(expected, 2 * CHUNK, 8 * CHUNK));
    }

    /**
     * Forbidden outcome: a byte a live write put on the device after take shows in an image read.
     * Each cycle takes a snapshot, then writers copy-on-write and overwrite the live device in random
     * places while readers read the image over NBD (three connections, 64 KiB to 2 MiB at random
     * offsets), until every chunk was copied or the cycle's time is up.
     */
    @Test
    void liveWritesDuringImageReadsNeverShowInTheImage() throws Exception {
        AtomicLong reads = new AtomicLong();
        ExecutorService threads = Executors.newFixedThreadPool(5);
        try {
            for (int cycle = 0; cycle < 6; cycle++) {
                byte[] takeTime = read(live, 0, SIZE);
                UUID id = takeAndExport("c" + cycle);
                List<NbdTestClient> readers = List.of(connect("img"), connect("img"), connect("img"));
                AtomicBoolean stop = new AtomicBoolean();
                List<Future<?>> running = new ArrayList<>();
                for (int w = 0; w < 2; w++) {
                    SplittableRandom random = new SplittableRandom(cycle * 10L + w);
                    running.add(threads.submit(() -> {
                        while (!stop.get()) {
                            int length = CHUNK / 4 * (1 + random.nextInt(8));
                            long at = random.nextLong(SIZE - length + 1) & ~511L;
                            write(live, at, pattern(random.nextLong(), length));
                        }
                        return null;
                    }));
                }
                for (NbdTestClient reader : readers) {
                    SplittableRandom random = new SplittableRandom(cycle * 10L + 5 + readers.indexOf(reader));
                    int c = cycle;
                    running.add(threads.submit(() -> {
                        while (!stop.get()) {
                            int length = RequestHandler.SEND_FILE_MIN_BYTES * (1 + random.nextInt(32));
                            int at = random.nextInt(SIZE - length + 1);
                            byte[] got = reader.read(at, length);
                            if (!Arrays.equals(got, 0, length, takeTime, at, at + length)) {
                                throw new AssertionError("cycle " + c + ": a read of " + length + " bytes at " + at
                                        + " differs from the take-time content at " + (at + Arrays.mismatch(got, 0,
                                        length, takeTime, at, at + length)));
                            }
                            reads.incrementAndGet();
                        }
                        return null;
                    }));
                }
                Thread.sleep(700);
                stop.set(true);
                for (Future<?> f : running) {
                    f.get(30, TimeUnit.SECONDS);
                }
                for (NbdTestClient reader : readers) {
                    reader.close();
                    clients.remove(reader);
                }
                engine.snapshotDestroy(id);
                Files.delete(dir.resolve("diff-c" + cycle));
            }
        } finally {
            threads.shutdownNow();
        }
        assertThat(reads.get()).isGreaterThan(100);
        assertThat(filePieces.get()).as("copied chunks went out as ranges of the storage").isPositive();
        assertThat(bytePieces.get()).as("chunks not copied went out as bytes").isPositive();
    }

    private static byte[] pattern(long seed, int length) {
        byte[] b = new byte[length];
        new SplittableRandom(seed).nextBytes(b);
        return b;
    }

    private static void write(BlockDevice d, long offsetBytes, byte[] data) throws IOException {
        d.write(ByteBuffer.wrap(data), offsetBytes);
    }

    private static byte[] read(BlockDevice d, long offsetBytes, int lengthBytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(lengthBytes);
        d.read(b, offsetBytes);
        return b.array();
    }

    /** The image as exported, counting what its sender hands through the server's sink. */
    private final class CountingSender extends ForwardingDevice {
        private final BlockDevice image;

        CountingSender(BlockDevice image) {
            super(image);
            this.image = image;
        }

        @Override
        public Sender sender() {
            Sender real = image.sender();
            return (offset, length, sink) -> real.send(offset, length, new ByteSink() {
                @Override
                public void file(FileChannel file, long positionBytes, int lengthBytes) throws IOException {
                    filePieces.incrementAndGet();
                    sink.file(file, positionBytes, lengthBytes);
                }

                @Override
                public void bytes(ByteBuffer src) throws IOException {
                    bytePieces.incrementAndGet();
                    sink.bytes(src);
                }

                @Override
                public ByteBuffer scratch() throws IOException {
                    return sink.scratch();
                }
            });
        }

        /** Images belong to their snapshot. */
        @Override
        public void close() {
        }
    }
}
