package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.RandomAccessFile;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.blksnap.cli.CliRun;
import org.blksnap.daemon.Blksnapd;
import org.blksnap.engine.BlockDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * Devices added and removed at run time, through the real daemon and the real tool: served at once,
 * kept in the data directory's registry across restarts, merged with the devices declared by flags
 * by the documented rules, and never half added or half removed. (The NBD clients' side is
 * {@link RuntimeDevicesNbdTest}.)
 */
class RuntimeDevicesTest {
    private static final long MiB = 1 << 20;
    private static final List<String> PARAMS = List.of("diff_storage_minimum=4096");

    @TempDir
    Path dir;
    Path data;
    Path store;
    DaemonHarness d;

    @BeforeEach
    void start() throws Exception {
        data = dir.resolve("data");
        store = Files.createDirectories(dir.resolve("store"));
        d = DaemonHarness.start(data, List.of("disk0=8M"), PARAMS);
    }

    @AfterEach
    void stop() throws Exception {
        if (d != null) {
            d.close();
        }
    }

    private void restart() throws Exception {
        d.close();
        d = null;
        d = DaemonHarness.start(data, List.of("disk0=8M"), PARAMS);
    }

    private Path registry() {
        return data.resolve("devices");
    }

    private byte[] registryBytes() throws Exception {
        return Files.exists(registry()) ? Files.readAllBytes(registry()) : null;
    }

    private List<String> list() {
        return d.ok("device", "list").lines().toList();
    }

    private List<String> storeFiles() throws Exception {
        try (Stream<Path> s = Files.list(store)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    private String line(String name, long sizeBytes, String state, String origin, Path path) {
        return name + " " + sizeBytes + " " + state + " " + d.uri(name) + " " + origin + " " + path;
    }

    /** Blocks allocated to a file, in bytes (st_blocks is in 512-byte units). */
    private static long allocatedBytes(Path file) throws Exception {
        Process p = new ProcessBuilder("stat", "-c", "%b", file.toString()).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertThat(p.waitFor()).isZero();
        return Long.parseLong(out) * 512;
    }

    private static void createFile(Path file, long sizeBytes) throws Exception {
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
            raf.setLength(sizeBytes);
        }
    }

    /** Runs blksnapd as the command line would, not blocking; returns its exit code and output. */
    private static CliRun blksnapd(String... args) {
        Blksnapd b = new Blksnapd();
        StringWriter w = new StringWriter();
        int rc = b.execute(args, new PrintWriter(w), new PrintWriter(w), false);
        if (rc == 0) {
            try {
                b.daemon().close();
            } catch (Exception e) {
                throw new AssertionError(e);
            }
        }
        return new CliRun(rc, w.toString(), "");
    }

    @Test
    void aDeviceAddedAtRunTimeIsServedAtOnceListedWithItsOriginAndKeptInTheRegistry() throws Exception {
        Path d1 = store.resolve("d1.img");
        assertThat(d.ok("device", "add", "d1=" + d1 + ":16M")).isEqualTo(line("d1", 16 * MiB, "untracked", "added", d1));
        assertThat(Files.size(d1)).isEqualTo(16 * MiB);
        assertThat(allocatedBytes(d1)).as("created sparse").isZero();
        BlockDevice served = d.daemon().engine().device("d1");
        served.write(ByteBuffer.wrap(new byte[] {7, 7, 7}), 512);

        Path d2 = store.resolve("d2.img");
        Files.write(d2, new byte[(int) (4 * MiB)]);
        assertThat(d.ok("device", "add", "d2=" + d2)).isEqualTo(line("d2", 4 * MiB, "untracked", "added", d2));
        Path d3 = store.resolve("d3.img");
        createFile(d3, 8 * MiB);
        d.ok("device", "add", "d3=" + d3 + ":8M");

        assertThat(list()).as("in name order").containsExactly(line("d1", 16 * MiB, "untracked", "added", d1),
                line("d2", 4 * MiB, "untracked", "added", d2), line("d3", 8 * MiB, "untracked", "added", d3),
                line("disk0", 8 * MiB, "untracked", "flag", data.resolve("disk0.img")));
        JsonNode json = JsonMapper.builder().build().readTree(d.ok("--json", "device", "list")).path("devices");
        assertThat(json.get(0).path("name").asString()).isEqualTo("d1");
        assertThat(json.get(0).path("path").asString()).isEqualTo(d1.toString());
        assertThat(json.get(0).path("origin").asString()).isEqualTo("added");
        assertThat(json.get(3).path("origin").asString()).isEqualTo("flag");
        assertThat(json.get(0).has("unavailable")).isFalse();
        assertThat(registry()).exists();
        assertThat(data.resolve("devices.new")).doesNotExist();
    }

    @Test
    void aRestartServesTheAddedDevicesAgainWithTheirDataButNotTheRemovedOnes() throws Exception {
        Path d1 = store.resolve("d1.img");
        Path d2 = store.resolve("d2.img");
        d.ok("device", "add", "d1=" + d1 + ":8M");
        d.ok("device", "add", "d2=" + d2 + ":8M");
        d.daemon().engine().device("d1").write(ByteBuffer.wrap(new byte[] {1, 2, 3, 4}), 4096);
        d.ok("device", "remove", "d2");
        assertThat(d2).as("remove leaves the backing store").exists();

        restart();

        assertThat(list()).containsExactly(line("d1", 8 * MiB, "untracked", "added", d1),
                line("disk0", 8 * MiB, "untracked", "flag", data.resolve("disk0.img")));
        ByteBuffer back = ByteBuffer.allocate(4);
        d.daemon().engine().device("d1").read(back, 4096);
        assertThat(back.array()).containsExactly(1, 2, 3, 4);
    }

    @Test
    void aDeviceGivenByAFlagAndRemovedAtRunTimeIsBackAtTheNextStart() throws Exception {
        d.ok("device", "remove", "disk0");
        assertThat(list()).isEmpty();
        assertThat(registry()).as("flags are not written into the registry").doesNotExist();
        restart();
        assertThat(list()).containsExactly(line("disk0", 8 * MiB, "untracked", "flag", data.resolve("disk0.img")));
    }

    @Test
    void badRequestsGiveTheirErrnoAndChangeNeitherTheDevicesTheRegistryNorTheFiles() throws Exception {
        d.ok("device", "add", "d1=" + store.resolve("d1.img") + ":8M");
        Path existing = store.resolve("existing.img");
        createFile(existing, 8 * MiB);
        byte[] registryBefore = registryBytes();
        List<String> listBefore = list();
        List<String> filesBefore = storeFiles();

        d.fails(17, "EEXIST", "device", "add", "disk0=" + store.resolve("new0.img") + ":8M");
        d.fails(17, "EEXIST", "device", "add", "d1=" + store.resolve("new1.img") + ":8M");
        d.fails(22, "EINVAL", "device", "add", "a.b/c=" + store.resolve("new2.img") + ":8M");
        d.fails(22, "EINVAL", "device", "add", "blksnap-image0=" + store.resolve("new3.img") + ":8M");
        d.fails(2, "ENOENT", "device", "add", "d5=" + store.resolve("missing.img"));
        d.fails(2, "ENOENT", "device", "add", "d5=" + store.resolve("nodir/x.img") + ":8M");
        d.fails(22, "EINVAL", "device", "add", "d5=" + store);
        CliRun differs = d.fails(22, "EINVAL", "device", "add", "d5=" + existing + ":4M");
        assertThat(differs.err()).contains("is 8388608 bytes (8M), not the 4194304 bytes (4M) given");
        d.fails(22, "EINVAL", "device", "add", "d5=" + store.resolve("odd.img") + ":1000");
        d.fails(16, "EBUSY", "device", "add", "d5=" + data.resolve("disk0.img"));
        d.fails(16, "EBUSY", "device", "add", "d5=" + store.resolve("sub/../d1.img"));
        CliRun badSize = d.cli("device", "add", "d5=" + store.resolve("x.img") + ":12Q");
        assertThat(badSize.exitCode()).isEqualTo(64);
        d.fails(6, "ENXIO", "device", "remove", "nosuch");

        assertThat(registryBytes()).isEqualTo(registryBefore);
        assertThat(list()).isEqualTo(listBefore);
        assertThat(storeFiles()).isEqualTo(filesBefore);
        assertThat(Files.size(existing)).isEqualTo(8 * MiB);
        assertThat(d.daemon().engine().deviceNames()).containsExactly("d1", "disk0");
    }

    /**
     * The registry's two steps fail in turn: writing the new content (devices.new is a directory) and
     * renaming it into place (devices is a directory). An add is then undone whole (the device was
     * already served when the rename failed); a remove that cannot write the new content changes
     * nothing, and one whose rename fails says that the device is gone but will come back.
     */
    @Test
    void whenTheRegistryCannotBeWrittenAnAddIsUndoneWholeAndARemoveSaysWhatHappened() throws Exception {
        Path d1 = store.resolve("d1.img");
        d.ok("device", "add", "d1=" + d1 + ":8M");
        List<String> listBefore = list();
        byte[] registryBefore = registryBytes();

        Files.createDirectory(data.resolve("devices.new"));
        Files.createFile(data.resolve("devices.new").resolve("x"));
        CliRun notWritten = d.fails(5, "EIO", "device", "add", "d2=" + store.resolve("d2.img") + ":8M");
        assertThat(notWritten.err()).contains("device d2 was not added: cannot update " + registry());
        assertThat(store.resolve("d2.img")).doesNotExist();
        CliRun notRemoved = d.fails(5, "EIO", "device", "remove", "d1");
        assertThat(notRemoved.err()).contains("device d1 was not removed");
        assertThat(list()).isEqualTo(listBefore);
        assertThat(registryBytes()).isEqualTo(registryBefore);
        Files.delete(data.resolve("devices.new").resolve("x"));
        Files.delete(data.resolve("devices.new"));

        Files.move(registry(), data.resolve("devices.saved"));
        Files.createDirectory(registry());
        Files.createFile(registry().resolve("x"));
        CliRun notRenamed = d.fails(5, "EIO", "device", "add", "d2=" + store.resolve("d2.img") + ":8M");
        assertThat(notRenamed.err()).contains("cannot rename");
        assertThat(store.resolve("d2.img")).as("the file it created is deleted").doesNotExist();
        assertThat(list()).as("the device it had served is removed again").isEqualTo(listBefore);
        assertThat(data.resolve("devices.new")).doesNotExist();

        CliRun halfRemoved = d.fails(5, "EIO", "device", "remove", "d1");
        assertThat(halfRemoved.err()).contains("device d1 is removed, but " + registry() + " could not be updated, so it"
                + " will be served again at the next start unless it is removed again");
        assertThat(list()).noneMatch(l -> l.startsWith("d1 "));
        Files.delete(registry().resolve("x"));
        Files.delete(registry());
        Files.move(data.resolve("devices.saved"), registry());
        restart();
        assertThat(list()).as("as the message said").contains(line("d1", 8 * MiB, "untracked", "added", d1));
        d.ok("device", "remove", "d1");
        restart();
        assertThat(list()).noneMatch(l -> l.startsWith("d1 "));
    }

    @Test
    void removingADeviceInASnapshotIsEbusyAndChangesNothingWhileForceCorruptsTheSnapshotWithAnEvent()
            throws Exception {
        Path d1 = store.resolve("d1.img");
        d.ok("device", "add", "d1=" + d1 + ":8M");
        String id = d.ok("snapshot", "create", "--device", "d1");
        d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("ds").toString(), "--size", "8M");
        d.ok("snapshot", "take", "--id", id);
        byte[] registryBefore = registryBytes();
        List<String> listBefore = list();

        CliRun busy = d.fails(16, "EBUSY", "device", "remove", "d1");
        assertThat(busy.err()).contains("is in snapshot " + id);
        assertThat(list()).isEqualTo(listBefore).anyMatch(l -> l.startsWith("d1 8388608 tracked "));
        assertThat(registryBytes()).isEqualTo(registryBefore);
        assertThat(d.ok("snapshot", "collect")).isEqualTo(id);
        assertThat(d.ok("--json", "status")).contains("\"state\":\"taken\"").contains("\"corruptedErrno\":0");

        d.ok("device", "remove", "--force", "d1");
        List<String> events = new ArrayList<>();
        for (int i = 0; i < 5 && events.stream().noneMatch(e -> e.startsWith("corrupted")); i++) {
            events.add(d.ok("snapshot", "wait-event", "--id", id, "--timeout", "2000"));
        }
        assertThat(events).contains("corrupted device=d1 errno=19 (ENODEV)");
        assertThat(list()).noneMatch(l -> l.startsWith("d1 "));
        assertThat(d.ok("--json", "status")).contains("\"state\":\"corrupted\"");
        d.ok("snapshot", "destroy", "--id", id);
        assertThat(d1).exists();
        restart();
        assertThat(list()).noneMatch(l -> l.startsWith("d1 "));
    }

    @Test
    void aTornOrCorruptedRegistryStopsTheStartNamingTheFileWhileAnInterruptedUpdateIsIgnored() throws Exception {
        d.ok("device", "add", "d1=" + store.resolve("d1.img") + ":8M");
        d.close();
        d = null;
        byte[] good = Files.readAllBytes(registry());
        String[] args = {"--data-dir", data.toString(), "--listen", "none", "--device",
                "disk0=" + data.resolve("disk0.img")};

        // a write cut short leaves a torn devices.new beside the good file: ignored and deleted
        Files.write(data.resolve("devices.new"), Arrays.copyOf(good, 7));
        d = DaemonHarness.start(data, List.of("disk0=8M"), PARAMS);
        assertThat(list()).anyMatch(l -> l.startsWith("d1 8388608 untracked"));
        assertThat(data.resolve("devices.new")).doesNotExist();
        d.close();
        d = null;

        byte[] flipped = good.clone();
        flipped[good.length / 2] ^= 0x10;
        Files.write(registry(), flipped);
        CliRun corrupted = blksnapd(args);
        assertThat(corrupted.exitCode()).as(corrupted.out()).isEqualTo(1);
        assertThat(corrupted.out()).contains("the device registry " + registry() + " cannot be read")
                .contains("CRC32C does not match").contains("move it away");
        assertThat(Files.readAllBytes(registry())).as("left as it was, for the operator").isEqualTo(flipped);

        Files.write(registry(), Arrays.copyOf(good, good.length - 3));
        CliRun truncated = blksnapd(args);
        assertThat(truncated.exitCode()).isEqualTo(1);
        assertThat(truncated.out()).contains("truncated");

        Files.write(registry(), good);
        CliRun again = blksnapd(args);
        assertThat(again.exitCode()).as(again.out()).isZero();
    }

    @Test
    void aDeclaredDeviceThatConflictsWithARegisteredOneStopsTheStartNamingBothPaths() throws Exception {
        Path d1 = store.resolve("d1.img");
        d.ok("device", "add", "d1=" + d1 + ":8M");
        d.close();
        d = null;
        byte[] registryBefore = registryBytes();
        Path other = store.resolve("other.img");

        CliRun conflict = blksnapd("--data-dir", data.toString(), "--listen", "none", "--device",
                "disk0=" + data.resolve("disk0.img"), "--device", "d1=" + other + ":8M");
        assertThat(conflict.exitCode()).as(conflict.out()).isEqualTo(64);
        assertThat(conflict.out()).contains("device d1: --device gives " + other + ", but it was added at run time with "
                + d1).contains("blksnap device remove d1");
        assertThat(other).as("nothing is opened or created before the merge is judged").doesNotExist();

        CliRun twice = blksnapd("--data-dir", data.toString(), "--listen", "none", "--device",
                "disk0=" + data.resolve("disk0.img"), "--device", "d9=" + d1);
        assertThat(twice.exitCode()).isEqualTo(64);
        assertThat(twice.out()).contains("devices d9 (--device) and d1 (device add) are both backed by " + d1);

        assertThat(registryBytes()).as("a refused start changes no registry").isEqualTo(registryBefore);
    }

    @Test
    void aDeclaredDeviceWithTheRegisteredPathIsServedOnceAsDeclaredAndStaysRegistered() throws Exception {
        Path d1 = store.resolve("d1.img");
        d.ok("device", "add", "d1=" + d1 + ":8M");
        d.close();
        d = null;
        byte[] registryBefore = registryBytes();
        Blksnapd b = new Blksnapd();
        StringWriter w = new StringWriter();
        assertThat(b.execute(new String[] {"--data-dir", data.toString(), "--listen", "none", "--device",
                "d1=" + d1}, new PrintWriter(w), new PrintWriter(w), false)).as(w.toString()).isZero();
        try {
            CliRun r = CliRun.run(data.resolve("control.sock"), "device", "list");
            assertThat(r.out().lines()).containsExactly("d1 8388608 untracked " + b.daemon().uri("d1") + " flag " + d1);
        } finally {
            b.daemon().close();
        }
        assertThat(registryBytes()).isEqualTo(registryBefore);
    }

    @Test
    void aRegisteredDeviceWhoseStoreIsMissingAtStartIsSkippedLoudlyAndStaysRegisteredUntilRemoved() throws Exception {
        Path d1 = store.resolve("d1.img");
        Path d2 = store.resolve("d2.img");
        d.ok("device", "add", "d1=" + d1 + ":8M");
        d.ok("device", "add", "d2=" + d2 + ":8M");
        d.close();
        d = null;
        Files.delete(d1);

        d = DaemonHarness.start(data, List.of("disk0=8M"), PARAMS);
        assertThat(list()).containsExactly("d1 0 unavailable - added " + d1, line("d2", 8 * MiB, "untracked", "added", d2),
                line("disk0", 8 * MiB, "untracked", "flag", data.resolve("disk0.img")));
        JsonNode gone = JsonMapper.builder().build().readTree(d.ok("--json", "device", "list")).path("devices").get(0);
        assertThat(gone.path("unavailable").asString()).isEqualTo("ENOENT: backing file " + d1 + " of device d1 does not"
                + " exist");
        assertThat(d1).as("never re-created: that would serve zeros as the device's data").doesNotExist();
        d.fails(17, "EEXIST", "device", "add", "d1=" + d1 + ":8M");
        assertThat(d1).doesNotExist();

        // back once the store is back
        createFile(d1, 8 * MiB);
        restart();
        assertThat(list()).contains(line("d1", 8 * MiB, "untracked", "added", d1));

        // or dropped with device remove
        d.close();
        d = null;
        Files.delete(d1);
        d = DaemonHarness.start(data, List.of("disk0=8M"), PARAMS);
        d.ok("device", "remove", "d1");
        assertThat(list()).noneMatch(l -> l.startsWith("d1 "));
        restart();
        assertThat(list()).containsExactly(line("d2", 8 * MiB, "untracked", "added", d2),
                line("disk0", 8 * MiB, "untracked", "flag", data.resolve("disk0.img")));
    }

    @Test
    void theDefaultDisk0GivesWayToARegisteredDisk0() throws Exception {
        d.close();
        d = null;
        Path data2 = dir.resolve("data2");
        Path mine = store.resolve("mine.img");
        String[] bare = {"--data-dir", data2.toString(), "--listen", "none"};
        Blksnapd b = new Blksnapd();
        StringWriter w = new StringWriter();
        assertThat(b.execute(bare, new PrintWriter(w), new PrintWriter(w), false)).as(w.toString()).isZero();
        Path control = data2.resolve("control.sock");
        try {
            assertThat(CliRun.run(control, "device", "list").line()).endsWith(" default " + data2.resolve("disk0.img"));
            assertThat(CliRun.run(control, "device", "remove", "disk0").exitCode()).isZero();
            assertThat(CliRun.run(control, "device", "add", "disk0=" + mine + ":8M").exitCode()).isZero();
        } finally {
            b.daemon().close();
        }
        Blksnapd again = new Blksnapd();
        StringWriter w2 = new StringWriter();
        assertThat(again.execute(bare, new PrintWriter(w2), new PrintWriter(w2), false)).as(w2.toString()).isZero();
        try {
            assertThat(CliRun.run(control, "device", "list").line())
                    .isEqualTo("disk0 8388608 untracked " + again.daemon().uri("disk0") + " added " + mine);
        } finally {
            again.daemon().close();
        }
    }

    /**
     * Many clients add and remove devices at once, some fighting over the same names: no add or
     * remove is lost or doubled. Each name's successful adds and removes must alternate (the
     * manager serialises them), so (adds - removes) is 1 exactly for the names listed at the end, 0
     * for the others; and the registry a restart reads holds exactly the names listed before it.
     */
    @Test
    void concurrentAddsAndRemovesOfSameAndDifferentNamesLoseAndDoubleNothing() throws Exception {
        int threads = 8;
        int opsPerThread = 24;
        List<String> names = new ArrayList<>(List.of("s0", "s1", "s2"));
        for (int t = 0; t < threads; t++) {
            names.add("t" + t);
        }
        Map<String, AtomicInteger> balance = new ConcurrentHashMap<>();
        names.forEach(n -> balance.put(n, new AtomicInteger()));
        Set<Integer> exitCodes = ConcurrentHashMap.newKeySet();
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            int me = t;
            workers.add(Thread.ofPlatform().start(() -> {
                Random random = new Random(1234 + me);
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int i = 0; i < opsPerThread; i++) {
                    String name = random.nextBoolean() ? "t" + me : "s" + random.nextInt(3);
                    boolean add = random.nextBoolean();
                    CliRun r = add ? d.cli("device", "add", name + "=" + store.resolve(name + ".img") + ":4M")
                            : d.cli("device", "remove", name);
                    exitCodes.add(r.exitCode());
                    if (r.exitCode() == 0) {
                        balance.get(name).addAndGet(add ? 1 : -1);
                    }
                }
            }));
        }
        go.countDown();
        for (Thread w : workers) {
            w.join();
        }
        assertThat(exitCodes).as("only success, EEXIST and ENXIO").isSubsetOf(0, 17, 6);
        Set<String> listed = new TreeSet<>();
        for (String l : list()) {
            assertThat(listed.add(l.split(" ")[0])).as("listed once: " + l).isTrue();
        }
        listed.remove("disk0");
        for (String n : names) {
            assertThat(balance.get(n).get()).as(n).isEqualTo(listed.contains(n) ? 1 : 0);
        }
        assertThat(new TreeSet<>(d.daemon().engine().deviceNames())).isEqualTo(union(listed, "disk0"));
        restart();
        Set<String> afterRestart = new TreeSet<>(list().stream().map(l -> l.split(" ")[0]).toList());
        assertThat(afterRestart).isEqualTo(union(listed, "disk0"));
    }

    private static Set<String> union(Set<String> s, String also) {
        Set<String> u = new TreeSet<>(s);
        u.add(also);
        return u;
    }
}
