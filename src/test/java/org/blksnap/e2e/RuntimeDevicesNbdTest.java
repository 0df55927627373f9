package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.LoopDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.LoggerFactory;

/**
 * Devices added and removed at run time, seen by real NBD clients: an added device is an export at
 * once (nbdinfo, qemu-io), can be snapshotted like any other, and a removed device's clients are
 * disconnected cleanly: what they had in flight is answered, then the connection ends, and the
 * server logs no warning or stack trace about it.
 */
@Tag("system")
class RuntimeDevicesNbdTest {
    private static final Duration T = Duration.ofSeconds(60);

    @TempDir
    Path dir;
    Path store;
    DaemonHarness d;

    @BeforeEach
    void start() throws Exception {
        store = Files.createDirectories(dir.resolve("store"));
        d = DaemonHarness.start(dir.resolve("data"), List.of("disk0=8M"), List.of("diff_storage_minimum=8192"));
    }

    @AfterEach
    void stop() throws Exception {
        d.close();
    }

    @Test
    void anAddedDeviceIsServedAtOnceCanBeSnapshottedAndIsGoneForClientsOnceRemoved() throws Exception {
        ExternalTool.require("nbdinfo", "qemu-io");
        Path file = store.resolve("d1.img");
        d.ok("device", "add", "d1=" + file + ":16M");
        String uri = d.uri("d1");
        assertThat(ExternalTool.run(T, "nbdinfo", "--size", uri).assertSuccess().stdout().trim()).isEqualTo("16777216");
        assertThat(ExternalTool.run(T, "nbdinfo", "--list", d.uri("disk0")).assertSuccess().stdout())
                .contains("export=\"d1\"");
        Nbd.qemuIoOk(uri, "write -P 0x11 0 16M");
        Nbd.qemuIoOk(uri, "read -P 0x11 0 16M");

        String id = d.ok("snapshot", "create", "--device", "d1");
        d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("ds").toString(), "--size", "16M");
        d.ok("snapshot", "take", "--id", id);
        assertThat(d.ok("snapshot", "images", "--id", id)).isEqualTo("d1 blksnap-image0 " + d.uri("blksnap-image0"));
        Nbd.qemuIoOk(uri, "write -P 0x22 0 1M");
        Nbd.qemuIoOk(d.uri("blksnap-image0"), "read -P 0x11 0 16M");
        d.fails(16, "EBUSY", "device", "remove", "d1");
        Nbd.qemuIoOk(uri, "read -P 0x22 0 1M", "read -P 0x11 1M 15M");
        d.ok("snapshot", "destroy", "--id", id);

        d.ok("device", "remove", "d1");
        ExternalTool.Result gone = Nbd.qemuIo(uri, "read 0 4k");
        assertThat(gone.exitCode()).as(gone.describe()).isNotZero();
        assertThat(gone.stderr()).contains("no export named 'd1'");
        byte[] head = new byte[1 << 20];
        try (var in = Files.newInputStream(file)) {
            assertThat(in.readNBytes(head, 0, head.length)).isEqualTo(head.length);
        }
        for (byte b : head) {
            assertThat(b).as("the backing file keeps the data").isEqualTo((byte) 0x22);
        }
    }

    @Test
    void aBlockDeviceIsAddedAtItsOwnSizeAndASizeThatDiffersIsRefused() throws Exception {
        ExternalTool.require("nbdinfo", "qemu-io");
        Path backing = store.resolve("loop.img");
        try (var raf = new java.io.RandomAccessFile(backing.toFile(), "rw")) {
            raf.setLength(24 << 20);
        }
        try (LoopDevice loop = LoopDevice.attach(backing, 0)) {
            d.fails(22, "EINVAL", "device", "add", "blk=" + loop.path() + ":16M");
            assertThat(d.ok("device", "add", "blk=" + loop.path() + ":24M"))
                    .isEqualTo("blk 25165824 untracked " + d.uri("blk") + " added " + loop.path());
            assertThat(ExternalTool.run(T, "nbdinfo", "--size", d.uri("blk")).assertSuccess().stdout().trim())
                    .isEqualTo("25165824");
            Nbd.qemuIoOk(d.uri("blk"), "write -P 0x5c 1M 1M");
            Nbd.qemuIoOk(d.uri("blk"), "read -P 0x5c 1M 1M");
            d.ok("device", "remove", "blk");
        }
    }

    @Test
    void aRemovedDevicesClientsHaveTheirRequestsAnsweredThenAreDisconnectedWithoutServerWarnings() throws Exception {
        ExternalTool.require("/usr/bin/python3");
        d.ok("device", "add", "d1=" + store.resolve("d1.img") + ":32M");
        Path script = dir.resolve("client.py");
        // Four threads share one connection (libnbd handles are thread-safe), each writing 64 KiB and
        // reading back its whole 4 MiB region in a loop, so writes and long reads are in flight when
        // the device goes (reads do not pass the take barrier: only the order of removal keeps them
        // from meeting a closed file).
        Files.writeString(script, """
                import nbd, sys, threading, collections
                h = nbd.NBD()
                h.connect_uri(sys.argv[1])
                started = threading.Barrier(5)
                errors = collections.Counter()
                out = threading.Lock()  # one line at a time: print() from several threads interleaves its pieces
                def loop(n):
                    buf = bytes([n + 1]) * 65536
                    region = n * (4 << 20)
                    rounds = 0
                    started.wait()
                    # Keep going through error replies: stop only when the server has closed the connection.
                    while not (h.aio_is_dead() or h.aio_is_closed()):
                        try:
                            h.pwrite(buf, region + (rounds % 64) * 65536)
                            data = h.pread(4 << 20, region)
                            assert data[(rounds % 64) * 65536] == n + 1
                        except nbd.Error as e:
                            if not (h.aio_is_dead() or h.aio_is_closed()):
                                errors[str(e.errno)] += 1
                        rounds += 1
                        if rounds == 20:
                            with out:
                                print("running", n, flush=True)
                    with out:
                        print("ended", n, "after", rounds, "rounds", flush=True)
                threads = [threading.Thread(target=loop, args=(n,)) for n in range(4)]
                for t in threads:
                    t.start()
                started.wait()
                for t in threads:
                    t.join()
                print("error replies before the end:", dict(errors), flush=True)
                try:
                    h.pread(512, 0)
                    print("still connected", flush=True)
                except nbd.Error as e:
                    print("then:", e.string, flush=True)
                """);
        Logger root = (Logger) LoggerFactory.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME);
        ListAppender<ILoggingEvent> logs = new ListAppender<>();
        logs.start();
        root.addAppender(logs);
        Path log = dir.resolve("client.log");
        Process client = ExternalTool.start(Map.of(), dir, List.of("/usr/bin/python3", script.toString(), d.uri("d1")),
                log);
        try {
            await("every client thread busy").atMost(T).until(() -> Files.readString(log).lines()
                    .filter(l -> l.startsWith("running")).count() == 4);
            long start = System.nanoTime();
            d.ok("device", "remove", "d1");
            assertThat(Duration.ofNanos(System.nanoTime() - start)).as("remove waits only for requests in flight")
                    .isLessThan(Duration.ofSeconds(5));
            assertThat(client.waitFor(20, TimeUnit.SECONDS)).as("the client is disconnected, not left hanging")
                    .isTrue();
            String out = Files.readString(log);
            assertThat(out.lines().filter(l -> l.startsWith("ended")).count()).as(out).isEqualTo(4);
            assertThat(out).as(out).contains("then:").doesNotContain("still connected").doesNotContain("Traceback");
            // Requests that arrived after the device was marked removed are refused with ESHUTDOWN (the
            // export is going away); none failed with EIO, as a read meeting a closed file would.
            String replies = out.lines().filter(l -> l.startsWith("error replies")).findFirst().orElseThrow();
            assertThat(replies).as(out).doesNotContain("EIO").doesNotContain("EINVAL");
        } finally {
            ExternalTool.killTree(client);
            root.detachAppender(logs);
        }
        List<String> warnings = logs.list.stream().filter(e -> e.getLevel().isGreaterOrEqual(Level.WARN))
                .map(e -> e.getLoggerName() + ": " + e.getFormattedMessage()).toList();
        assertThat(warnings).as("no warnings, errors or stack traces on the server").isEmpty();
        assertThat(logs.list).extracting(ILoggingEvent::getFormattedMessage)
                .contains("closed 1 connection(s) of export d1");
        assertThat(d.ok("device", "list")).doesNotContain("d1 ");
    }
}
