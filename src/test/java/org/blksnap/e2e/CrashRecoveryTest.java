package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import java.io.EOFException;
import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.blksnap.cli.CliRun;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * The crash guarantee, with a real kill -9: blksnapd runs as its own JVM with checkpoints every
 * 20 ms and 1 MiB journal regions; NBD clients write at random (some writes with FUA, some
 * flushes), a taker takes and destroys snapshots in a loop, and the daemon is killed at a random
 * moment (so also in the middle of takes and of checkpoints). After each restart a snapshot is
 * taken and the CBT map read: every block acknowledged after the last take S that returned must
 * have a value above S, unless the tracker got a new generation (which must name its reason).
 *
 * <p>{@code -Dblksnap.crash.cycles=N} sets the number of kill cycles (default 4);
 * {@code -Dblksnap.crash.seed=N} replays a run's random choices (the seed is logged). For example
 * {@code bin/test -Dtest=CrashRecoveryTest -Dblksnap.crash.cycles=200}. The run fails after
 * 2 minutes plus 20 seconds per cycle instead of the suite's 5 minutes.
 */
@Tag("system")
class CrashRecoveryTest {
    private static final Logger LOG = LoggerFactory.getLogger(CrashRecoveryTest.class);
    static final long DEVICE_BYTES = 64L << 20;
    static final int BLOCK_SHIFT = 16;
    static final JsonMapper JSON = JsonMapper.builder().build();

    @TempDir
    Path dir;
    Path data;
    Process daemon;
    int starts;
    /** Whether the taker is inside a take call right now (to count kills that fall in one). */
    final AtomicBoolean inTake = new AtomicBoolean();

    /** A write that was acknowledged: when it was sent and the tracking blocks it touched. */
    record Acked(long sentNanos, long firstBlock, long lastBlock) {
    }

    /** The last take that returned: its number, generation and when it returned. */
    record Take(int number, String generation, long returnedNanos) {
    }

    @AfterEach
    void killTheDaemonLeftBehind() throws InterruptedException {
        if (daemon != null && daemon.isAlive()) {
            daemon.destroyForcibly();
            daemon.waitFor(30, TimeUnit.SECONDS);
        }
    }

    @Test
    @Timeout(value = 1, unit = TimeUnit.DAYS) // the run's own limit below grows with the number of cycles
    void noAcknowledgedWriteIsUnderReportedAfterAKillNineAtARandomMoment() {
        int cycles = Integer.getInteger("blksnap.crash.cycles", 4);
        assertTimeoutPreemptively(Duration.ofSeconds(120 + 20L * cycles), () -> killCycles(cycles));
    }

    private void killCycles(int cycles) throws Exception {
        long seed = Long.getLong("blksnap.crash.seed", System.nanoTime());
        LOG.info("crash test: {} cycles, seed {} (-Dblksnap.crash.seed={} replays the choices)", cycles, seed, seed);
        Random rnd = new Random(seed);
        data = dir.resolve("data");
        Files.createDirectories(data);
        startDaemon();
        Take last = takeAndCheck(List.of(), null);
        Map<String, Integer> resets = new TreeMap<>();
        long checkedBlocks = 0;
        int takesSeen = 0;
        int killsInTake = 0;
        for (int cycle = 1; cycle <= cycles; cycle++) {
            ConcurrentLinkedQueue<Acked> acked = new ConcurrentLinkedQueue<>();
            ConcurrentLinkedQueue<Take> takes = new ConcurrentLinkedQueue<>();
            AtomicBoolean run = new AtomicBoolean(true);
            List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < 3; w++) {
                long writerSeed = rnd.nextLong();
                threads.add(Thread.ofPlatform().start(() -> writeUntilKilled(new Random(writerSeed), acked, run)));
            }
            Take start = last;
            long takerSeed = rnd.nextLong();
            threads.add(Thread.ofPlatform().start(() -> takeUntilKilled(new Random(takerSeed), start, takes, run)));
            Thread.sleep(100 + rnd.nextInt(900));
            if (inTake.get()) {
                killsInTake++;
            }
            daemon.destroyForcibly(); // SIGKILL
            assertThat(daemon.waitFor(30, TimeUnit.SECONDS)).isTrue();
            run.set(false);
            for (Thread t : threads) {
                t.join();
            }
            for (Take t : takes) {
                last = t;
                takesSeen++;
            }
            Take before = last;
            List<Acked> mustBeAbove = acked.stream().filter(a -> a.sentNanos() > before.returnedNanos()).toList();
            startDaemon();
            Take after = takeAndCheck(mustBeAbove, before);
            if (!after.generation().equals(before.generation())) {
                String reason = tracker().path("generationReason").asString();
                resets.merge(reason, 1, Integer::sum);
            }
            checkedBlocks += mustBeAbove.size();
            LOG.info("crash cycle {}/{}: {} writes acknowledged, {} takes returned, {} writes checked above {}, now {}",
                    cycle, cycles, acked.size(), takes.size(), mustBeAbove.size(), before.number(), after.number());
            last = after;
        }
        daemon.destroy();
        daemon.waitFor(30, TimeUnit.SECONDS);
        LOG.info("crash test done: {} cycles ({} kills during a take call), {} takes, {} acknowledged writes checked,"
                + " new generations {}", cycles, killsInTake, takesSeen, checkedBlocks, resets);
        System.out.println("CRASH-TEST-SUMMARY cycles=" + cycles + " killsDuringTake=" + killsInTake + " seed=" + seed
                + " takes=" + takesSeen + " checkedWrites=" + checkedBlocks + " newGenerations=" + resets);
        // A crash itself never loses the generation; only the wrap of the numbers (a take) starts a new one.
        assertThat(resets.keySet()).as("reasons of new generations").isSubsetOf("NUMBER_WRAPPED");
    }

    // ---- the daemon ---------------------------------------------------------------------------------

    private void startDaemon() throws Exception {
        Path log = dir.resolve("blksnapd-" + (++starts) + ".log");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-Xmx512m", "-cp", System.getProperty("java.class.path"),
                "org.blksnap.daemon.Blksnapd", "--data-dir", data.toString(),
                "--device", "d0=" + data.resolve("d0.img") + ":64M", "--listen", "none",
                "--socket", data.resolve("nbd.sock").toString(), "--control", data.resolve("control.sock").toString(),
                "--param", "diff_storage_minimum=16384", "--checkpoint-interval", "0.02", "--cbt-region", "1M"));
        daemon = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        Process p = daemon;
        await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(50)).until(() -> {
            if (!p.isAlive()) {
                throw new AssertionError("blksnapd exited " + p.exitValue() + ":\n" + Files.readString(log));
            }
            return Files.exists(data.resolve("control.sock")) && cli("version").exitCode() == 0;
        });
    }

    private CliRun cli(String... args) {
        return CliRun.run(data.resolve("control.sock"), args);
    }

    private String ok(String... args) {
        CliRun r = cli(args);
        assertThat(r.exitCode()).as("blksnap %s\n%s", String.join(" ", args), r).isZero();
        return r.line();
    }

    private JsonNode tracker() {
        return JSON.readTree(ok("--json", "tracker", "collect")).path("trackers").get(0);
    }

    /**
     * After a (re)start: takes a snapshot, reads its map, and checks every write in {@code mustBeAbove}
     * against the last take {@code before}; destroys the snapshot. Returns this take.
     */
    private Take takeAndCheck(List<Acked> mustBeAbove, Take before) throws Exception {
        String id = ok("snapshot", "create", "--device", "d0");
        Path storage = data.resolve("check-" + starts + ".img");
        ok("snapshot", "append-storage", "--id", id, "--file", storage.toString(), "--size", "16M");
        ok("snapshot", "take", "--id", id);
        JsonNode t = tracker();
        Path mapFile = dir.resolve("map");
        ok("tracker", "read-cbt-map", "--device", "d0", "--file", mapFile.toString());
        byte[] map = Files.readAllBytes(mapFile);
        Take now = new Take(t.path("snapNumber").asInt(), t.path("generationId").asString(), System.nanoTime());
        if (before != null && now.generation().equals(before.generation())) {
            assertThat(now.number()).as("numbers go on after a crash").isGreaterThan(before.number());
            for (Acked a : mustBeAbove) {
                for (long b = a.firstBlock(); b <= a.lastBlock(); b++) {
                    assertThat(Byte.toUnsignedInt(map[(int) b])).as("block %d written after take %d", b, before.number())
                            .isGreaterThan(before.number());
                }
            }
        } else if (before != null) {
            assertThat(t.path("generationReason").asString()).as("a new generation says why")
                    .isNotEqualTo("NEW_TRACKER");
            LOG.warn("new generation after a crash: {} {}", t.path("generationReason").asString(),
                    t.path("generationDetail").asString());
        }
        ok("snapshot", "destroy", "--id", id);
        Files.deleteIfExists(storage);
        return now;
    }

    // ---- load -------------------------------------------------------------------------------------

    private void writeUntilKilled(Random rnd, ConcurrentLinkedQueue<Acked> acked, AtomicBoolean run) {
        try (NbdWriter nbd = NbdWriter.connect(data.resolve("nbd.sock"), "d0")) {
            while (run.get()) {
                int length = 512 * (1 + rnd.nextInt(rnd.nextBoolean() ? 8 : 512));
                long offset = 512L * rnd.nextLong((DEVICE_BYTES - length) / 512);
                boolean fua = rnd.nextInt(4) == 0;
                long sent = System.nanoTime();
                nbd.write(offset, length, fua);
                acked.add(new Acked(sent, offset >>> BLOCK_SHIFT, (offset + length - 1) >>> BLOCK_SHIFT));
                if (rnd.nextInt(10) == 0) {
                    nbd.flush();
                }
            }
        } catch (IOException e) {
            // the daemon was killed: the write in flight was not acknowledged
        }
    }

    private void takeUntilKilled(Random rnd, Take start, ConcurrentLinkedQueue<Take> takes, AtomicBoolean run) {
        Take last = start;
        int n = 0;
        while (run.get()) {
            try {
                Thread.sleep(rnd.nextInt(60));
            } catch (InterruptedException e) {
                return;
            }
            CliRun created = cli("snapshot", "create", "--device", "d0");
            if (created.exitCode() != 0) {
                return;
            }
            String id = created.line();
            Path storage = data.resolve("take-" + starts + "-" + (n++) + ".img");
            if (cli("snapshot", "append-storage", "--id", id, "--file", storage.toString(), "--size", "16M").exitCode() != 0) {
                return;
            }
            inTake.set(true);
            int took = cli("snapshot", "take", "--id", id).exitCode();
            inTake.set(false);
            if (took != 0) {
                return;
            }
            long returned = System.nanoTime();
            // Only this thread takes: the number is the last one's + 1, or 0 in a new generation at the wrap.
            CliRun collect = cli("--json", "tracker", "collect");
            Take t;
            if (collect.exitCode() == 0) {
                JsonNode tr = JSON.readTree(collect.line()).path("trackers").get(0);
                t = new Take(tr.path("snapNumber").asInt(), tr.path("generationId").asString(), returned);
            } else if (last.number() + 1 < 255) {
                t = new Take(last.number() + 1, last.generation(), returned);
            } else {
                return; // a wrap whose new generation we cannot learn: the check then expects a new generation
            }
            takes.add(t);
            last = t;
            if (cli("snapshot", "destroy", "--id", id).exitCode() != 0) {
                return;
            }
            try {
                Files.deleteIfExists(storage);
            } catch (IOException e) {
                return;
            }
        }
    }

    /**
     * The smallest NBD client that does what this test needs: fixed newstyle handshake with
     * NBD_OPT_EXPORT_NAME, then WRITE (optionally FUA) and FLUSH, one at a time, simple replies.
     */
    static final class NbdWriter implements AutoCloseable {
        private static final long NBDMAGIC = 0x4e42444d41474943L;
        private static final long IHAVEOPT = 0x49484156454F5054L;
        private static final int REQUEST_MAGIC = 0x25609513;
        private static final int SIMPLE_REPLY_MAGIC = 0x67446698;
        private static final int FLAG_SEND_FUA = 1 << 3;
        private final SocketChannel ch;
        private final boolean fuaAllowed;
        private long cookie;
        private final ByteBuffer payload = ByteBuffer.allocate(256 << 10);

        private NbdWriter(SocketChannel ch, boolean fuaAllowed) {
            this.ch = ch;
            this.fuaAllowed = fuaAllowed;
        }

        static NbdWriter connect(Path socket, String export) throws IOException {
            SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(socket));
            try {
                ByteBuffer hello = read(ch, 18);
                if (hello.getLong(0) != NBDMAGIC || hello.getLong(8) != IHAVEOPT) {
                    throw new IOException("not an NBD newstyle server");
                }
                byte[] name = export.getBytes(StandardCharsets.UTF_8);
                ByteBuffer opt = ByteBuffer.allocate(4 + 16 + name.length);
                opt.putInt(3).putLong(IHAVEOPT).putInt(1).putInt(name.length).put(name).flip();
                writeAll(ch, opt);
                ByteBuffer export0 = read(ch, 10);
                return new NbdWriter(ch, (export0.getShort(8) & FLAG_SEND_FUA) != 0);
            } catch (IOException e) {
                ch.close();
                throw e;
            }
        }

        void write(long offset, int length, boolean fua) throws IOException {
            ByteBuffer req = ByteBuffer.allocate(28);
            req.putInt(REQUEST_MAGIC).putShort((short) (fua && fuaAllowed ? 1 : 0)).putShort((short) 1)
                    .putLong(++cookie).putLong(offset).putInt(length).flip();
            writeAll(ch, req);
            payload.clear().limit(length);
            writeAll(ch, payload);
            reply();
        }

        void flush() throws IOException {
            ByteBuffer req = ByteBuffer.allocate(28);
            req.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) 3).putLong(++cookie).putLong(0).putInt(0).flip();
            writeAll(ch, req);
            reply();
        }

        private void reply() throws IOException {
            ByteBuffer r = read(ch, 16);
            if (r.getInt(0) != SIMPLE_REPLY_MAGIC || r.getLong(8) != cookie) {
                throw new IOException("unexpected reply");
            }
            if (r.getInt(4) != 0) {
                throw new IOException("NBD error " + r.getInt(4));
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
}
