package org.blksnap.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.blksnap.ctrl.ControlServer;
import org.blksnap.ctrl.FakeBlksnap;
import org.blksnap.ctrl.FakeDevices;
import org.blksnap.ctrl.FreezeHooks;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.StorageSpec;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

class CliTest {
    @TempDir
    Path dir;
    FakeBlksnap engine;
    FakeDevices devices;
    ControlServer server;
    Path socket;

    @BeforeEach
    void start() throws Exception {
        engine = new FakeBlksnap();
        socket = dir.resolve("control.sock");
        devices = new FakeDevices();
        server = ControlServer.start(engine, devices, socket, name -> "nbd://127.0.0.1:10809/" + name,
                cmd -> new FreezeHooks.CommandRunner.Result(0, ""), ev -> {
                });
    }

    @AfterEach
    void stop() throws Exception {
        server.close();
    }

    CliRun run(String... args) {
        return CliRun.run(socket, args);
    }

    /**
     * {@code backup --agent auto} backs up in the tool itself when the daemon runs no agent (ENOTSUP)
     * or predates it (ENOENT: unknown operation); {@code --agent daemon} insists and fails. Here the
     * tool's own backup then fails to read the fake daemon's image, and destroys its snapshot.
     */
    @Test
    void backupFallsBackToTheToolWhenTheDaemonHasNoAgentOrAnOlderOne() {
        String repo = dir.resolve("repo").toString();
        CliRun insist = run("backup", "--agent", "daemon", "--repo", repo, "--device", "disk0");
        assertThat(insist.exitCode()).as(insist.toString()).isEqualTo(95);
        assertThat(insist.err()).contains("ENOTSUP").contains("runs no backup agent");
        assertThat(engine.snapshotCollect()).isEmpty();
        for (boolean older : List.of(false, true)) {
            if (older) {
                server.serveAgent(refusingAgent(q -> { }, "unknown operation POST /v1/agent/start"));
            }
            CliRun r = run("backup", "--repo", repo, "--device", "disk0", "--storage-dir", dir.toString(),
                    "--storage-limit", "16M");
            assertThat(r.exitCode()).as("the tool's own read of the fake image fails: %s", r).isEqualTo(74);
            assertThat(r.err()).as(r.toString()).doesNotContain("ENOTSUP").doesNotContain("unknown operation")
                    .contains("nbd://127.0.0.1:10809/");
            assertThat(engine.snapshotCollect()).as("the tool destroyed its snapshot").isEmpty();
        }
    }

    /**
     * An agent run hands every option of {@code backup} to the agent, resolved as this process sees
     * it (paths absolute, sizes in bytes), or leaves it out for a declared reason: every option of
     * the command is in one of the two sets, and each forwarded one reaches the agent's command line
     * with the value given here.
     */
    @Test
    void backupHandsEveryOptionToTheAgentOrDeclaresWhyNot() {
        picocli.CommandLine backup = Main.commandLine(new Main()).getSubcommands().get("backup");
        java.util.Set<String> declared = new java.util.HashSet<>(BackupCommands.BackupCmd.AGENT_FORWARDED);
        declared.addAll(BackupCommands.BackupCmd.AGENT_NOT_FORWARDED);
        assertThat(backup.getCommandSpec().options()).extracting(o -> o.longestName())
                .as("every option of backup is forwarded to the agent or declared not to be")
                .allMatch(declared::contains);
        List<List<String>> seen = new java.util.concurrent.CopyOnWriteArrayList<>();
        server.serveAgent(refusingAgent(q -> seen.add(q.args()), "unknown operation"));
        Path cwd = Path.of("").toAbsolutePath();
        CliRun r = run("--json", "backup", "--repo", "target/agent-args-repo", "--key-file", "some.key", "--host", "h-1",
                "--dedup-scope", "host", "--device", "disk0", "--device", "disk1", "--freeze", "mnt/a", "--freeze", "/mnt/b",
                "--storage-dir", dir.toString(), "--storage-limit", "64M", "--storage-size", "1M", "--snapshot-lease", "42",
                "--pack-size", "2M", "--debug-pause-after", "3M", "--agent", "auto");
        assertThat(seen).as(r.toString()).hasSize(1);
        List<String> args = seen.getFirst();
        assertThat(args.getFirst()).isEqualTo("backup");
        java.util.Map<String, List<String>> given = new java.util.HashMap<>();
        for (int i = 1; i < args.size(); i++) {
            String o = args.get(i);
            if (o.equals("--json")) {
                given.computeIfAbsent(o, k -> new java.util.ArrayList<>()).add("");
            } else {
                given.computeIfAbsent(o, k -> new java.util.ArrayList<>()).add(args.get(++i));
            }
        }
        assertThat(given.keySet()).as("every forwarded option given here reaches the agent: %s", args)
                .containsExactlyInAnyOrderElementsOf(BackupCommands.BackupCmd.AGENT_FORWARDED);
        assertThat(given).containsEntry("--repo", List.of(cwd.resolve("target/agent-args-repo").toString()))
                .containsEntry("--key-file", List.of(cwd.resolve("some.key").toString()))
                .containsEntry("--host", List.of("h-1")).containsEntry("--dedup-scope", List.of("host"))
                .containsEntry("--device", List.of("disk0", "disk1"))
                .containsEntry("--freeze", List.of(cwd.resolve("mnt/a").toString(), "/mnt/b"))
                .containsEntry("--storage-dir", List.of(dir.toString()))
                .containsEntry("--storage-limit", List.of(Long.toString(64L << 20)))
                .containsEntry("--storage-size", List.of(Long.toString(1L << 20)))
                .containsEntry("--snapshot-lease", List.of("42"))
                .containsEntry("--pack-size", List.of(Long.toString(2L << 20)))
                .containsEntry("--debug-pause-after", List.of(Long.toString(3L << 20)));
        assertThat(args).doesNotContain("--agent", "--control", "--s3-endpoint");
        assertThat(engine.snapshotCollect()).as("the tool's own run after the refusal destroyed its snapshot").isEmpty();
    }

    /**
     * An agent that refuses every job as a daemon predating the agent does (ENOENT with
     * {@code message}), after showing the request to {@code seen}.
     */
    /**
     * A backup that runs in the tool although the launcher started a quick JVM for the agent's relay
     * (C1 only, {@code BLKSNAP_QUICK_JVM_LAUNCHER} set) runs the launcher again with
     * {@code BLKSNAP_IN_PROCESS_BACKUP} (its pid) and the same arguments, relays its output and ends with its
     * status; the quick process itself creates no snapshot. The relaunched run does not ask the
     * agent again.
     */
    @Test
    void aBackupInTheToolRunsInAJvmWithTheOptimizingCompiler() throws Exception {
        Path record = dir.resolve("relaunch.txt");
        Path launcher = dir.resolve("fake-launcher");
        Files.writeString(launcher, "#!/bin/bash\n"
                + "{ printf '%s\\n' \"$@\"; echo \"IN_PROCESS=${BLKSNAP_IN_PROCESS_BACKUP:-}\"; echo \"QUICK=${BLKSNAP_QUICK_JVM_LAUNCHER:-unset}\";"
                + " echo \"KEPT=${KEPT:-}\"; } > " + record + "\n"
                + "echo 'the full JVM backed up'; echo 'its warning' >&2; exit 7\n");
        Files.setPosixFilePermissions(launcher, java.nio.file.attribute.PosixFilePermissions.fromString("rwx------"));
        java.util.Map<String, String> env = java.util.Map.of(Relaunch.LAUNCHER_ENV, launcher.toString(), "KEPT", "yes");
        String repo = dir.resolve("repo").toString();
        List<String> seen = new java.util.concurrent.CopyOnWriteArrayList<>();
        server.serveAgent(refusingAgent(q -> seen.add("agent asked"), "unknown operation POST /v1/agent/start"));
        for (String agent : List.of("auto", "off")) {
            Files.deleteIfExists(record);
            CliRun r = CliRun.run(env, socket, "backup", "--repo", repo, "--device", "disk0", "--agent", agent);
            assertThat(r.exitCode()).as(r.toString()).isEqualTo(7);
            assertThat(r.out()).as(r.toString()).contains("the full JVM backed up");
            assertThat(r.err()).as(r.toString()).contains("its warning");
            assertThat(Files.readAllLines(record)).as("the same arguments, a full JVM, the launcher's name dropped")
                    .containsExactly("--control", socket.toString(), "backup", "--repo", repo, "--device", "disk0",
                            "--agent", agent, "IN_PROCESS=" + ProcessHandle.current().pid(), "QUICK=unset", "KEPT=yes");
            assertThat(engine.snapshotCollect()).as("the quick process made no snapshot").isEmpty();
        }
        assertThat(seen).as("--agent auto asked the agent first, --agent off did not").hasSize(1);
        // as a relaunch from this JVM's parent would be (this JVM itself cannot be watched for its end)
        CliRun child = CliRun.run(java.util.Map.of(Relaunch.IN_PROCESS_ENV,
                Long.toString(ProcessHandle.current().parent().orElseThrow().pid())), socket, "backup", "--repo", repo,
                "--device", "disk0", "--storage-limit", "16M");
        assertThat(seen).as("the relaunched run does not ask the agent again: %s", child).hasSize(1);
        assertThat(child.exitCode()).as("it backs up itself (and fails to read the fake image): %s", child).isEqualTo(74);
        assertThat(engine.snapshotCollect()).isEmpty();
        CliRun usage = CliRun.run(env, socket, "backup", "--repo", repo, "--device", "disk0", "--agent", "sometimes");
        assertThat(usage.exitCode()).as("bad input is refused by the quick process: %s", usage).isEqualTo(64);
        Files.deleteIfExists(record);
        CliRun missing = CliRun.run(java.util.Map.of(Relaunch.LAUNCHER_ENV, dir.resolve("no-such-launcher").toString()),
                socket, "backup", "--repo", repo, "--device", "disk0", "--agent", "off");
        assertThat(missing.exitCode()).as(missing.toString()).isEqualTo(74);
        assertThat(missing.err()).contains("no-such-launcher");
    }

    private static org.blksnap.ctrl.BackupAgent refusingAgent(
            java.util.function.Consumer<org.blksnap.ctrl.api.Requests.AgentStart> seen, String message) {
        return new org.blksnap.ctrl.BackupAgent() {
            @Override
            public org.blksnap.ctrl.api.Replies.AgentJob start(org.blksnap.ctrl.AccessPolicy.Caller caller,
                                                              org.blksnap.ctrl.api.Requests.AgentStart q) {
                seen.accept(q);
                throw new org.blksnap.engine.BlksnapException(org.blksnap.engine.Errno.ENOENT, message);
            }

            @Override
            public org.blksnap.ctrl.api.Replies.AgentOutput await(org.blksnap.ctrl.api.Requests.AgentWait q) {
                throw new AssertionError("no job was started");
            }

            @Override
            public void cancel(org.blksnap.ctrl.api.Requests.AgentCancel q) {
                throw new AssertionError("no job was started");
            }
        };
    }

    @Test
    void versionPrintsTheEngineVersion() {
        CliRun r = run("version");
        assertThat(r.exitCode()).as(r.toString()).isZero();
        assertThat(r.line()).isEqualTo("1.0.0.0");
    }

    @Test
    void globalOptionsWorkBeforeAndAfterTheCommand() {
        CliRun before = run("--json", "version");
        CliRun after = run("version", "--json");
        assertThat(after.exitCode()).as(after.toString()).isZero();
        assertThat(after.out()).isEqualTo(before.out()).startsWith("{");
        CliRun control = CliRun.run(null, "status", "--json", "--control", socket.toString());
        assertThat(control.exitCode()).as(control.toString()).isZero();
        assertThat(control.out()).startsWith("{");
    }

    @Test
    void snapshotCreatePrintsTheIdAlone() {
        CliRun r = run("snapshot", "create", "--device", "disk0", "--device", "disk1");
        assertThat(r.exitCode()).as(r.toString()).isZero();
        assertThat(UUID.fromString(r.line())).isNotNull();
        assertThat(engine.calls).contains("snapshotCreate [disk0, disk1]");
    }

    @Test
    void anEngineErrorExitsWithItsErrnoAndNamesItOnStderr() {
        UUID unknown = UUID.randomUUID();
        CliRun r = run("snapshot", "take", "--id", unknown.toString());
        assertThat(r.exitCode()).isEqualTo(3);
        assertThat(r.err()).startsWith("blksnap: snapshot take: ESRCH (3): ").contains(unknown.toString());
        CliRun dup = run("snapshot", "create", "--device", "disk0", "--device", "disk0");
        assertThat(dup.exitCode()).isEqualTo(22);
        assertThat(dup.err()).contains("EINVAL (22)");
        CliRun nodev = run("snapshot", "create", "--device", "nosuch");
        assertThat(nodev.exitCode()).isEqualTo(6);
        assertThat(nodev.err()).contains("ENXIO (6)");
    }

    @Test
    void everyCommandGroupAndCommandAnswersHelpWithExitZero() {
        for (String[] args : new String[][] {{"--help"}, {"snapshot", "--help"}, {"tracker", "--help"},
                {"device", "--help"}, {"snapshot", "take", "--help"}, {"tracker", "read-cbt-map", "-h"}}) {
            CliRun r = run(args);
            assertThat(r.exitCode()).as(String.join(" ", args) + ": " + r).isZero();
            assertThat(r.out()).startsWith("Usage: blksnap");
        }
        assertThat(run("snapshot", "--help").out()).contains("append-storage", "wait-event", "stretch");
    }

    @Test
    void usageErrorsExit64() {
        assertThat(run("snapshot", "take").exitCode()).isEqualTo(64);
        assertThat(run("frobnicate").exitCode()).isEqualTo(64);
        assertThat(run("snapshot").exitCode()).isEqualTo(64);
        CliRun badId = run("snapshot", "take", "--id", "1234");
        assertThat(badId.exitCode()).isEqualTo(64);
        assertThat(badId.err()).contains("Invalid value for option '--id': '1234' is not a UUID such as "
                + "123e4567-e89b-12d3-a456-426614174000");
        CliRun badSize = run("snapshot", "append-storage", "--id", UUID.randomUUID().toString(), "--file", "x",
                "--size", "12Q");
        assertThat(badSize.exitCode()).isEqualTo(64);
        CliRun badRange = run("tracker", "mark-dirty", "--device", "disk0", "--range", "12");
        assertThat(badRange.exitCode()).isEqualTo(64);
        assertThat(engine.calls).isEmpty();
    }

    @Test
    void deviceListShowsSizeStateUriOriginAndPathWithThePathLast() {
        CliRun r = run("device", "list");
        assertThat(r.exitCode()).as(r.toString()).isZero();
        assertThat(r.out().lines()).containsExactly(
                "disk0 1073741824 untracked nbd://127.0.0.1:10809/disk0 flag /fake/disk0.img",
                "disk1 67108864 untracked nbd://127.0.0.1:10809/disk1 flag /fake/disk1.img",
                "gone 0 unavailable - added /fake/gone.img");
        JsonNode gone = JsonMapper.builder().build().readTree(run("--json", "device", "list").out()).path("devices").get(2);
        assertThat(gone.path("unavailable").asString()).contains("does not exist");
        assertThat(gone.path("origin").asString()).isEqualTo("added");
    }

    @Test
    void deviceAddSendsTheNameAnAbsolutePathAndTheSizeAndPrintsTheNewDevice() {
        CliRun r = run("device", "add", "d9=rel/d9.img:64M");
        assertThat(r.exitCode()).as(r.toString()).isZero();
        Path abs = Path.of("").toAbsolutePath().resolve("rel/d9.img");
        assertThat(devices.calls).containsExactly("add d9 " + abs + " " + (64L << 20));
        assertThat(r.line()).isEqualTo("d9 67108864 untracked nbd://127.0.0.1:10809/d9 added " + abs);
        CliRun noSize = run("--json", "device", "add", "d8=/x/d8.img");
        assertThat(noSize.exitCode()).as(noSize.toString()).isZero();
        assertThat(devices.calls).last().isEqualTo("add d8 /x/d8.img 0");
        assertThat(JsonMapper.builder().build().readTree(noSize.out()).path("path").asString()).isEqualTo("/x/d8.img");
    }

    @Test
    void deviceAddOfAMalformedSpecIsAUsageErrorAndNothingIsSent() {
        for (String bad : List.of("d9", "=x.img", "d9=", "d9=/x.img:12Q", "d9=/x.img:0")) {
            CliRun r = run("device", "add", bad);
            assertThat(r.exitCode()).as(bad + ": " + r).isEqualTo(64);
            assertThat(r.err()).as(bad).startsWith("blksnap: device add: ");
        }
        assertThat(run("device", "add").exitCode()).isEqualTo(64);
        assertThat(run("device", "remove").exitCode()).isEqualTo(64);
        assertThat(devices.calls).isEmpty();
    }

    @Test
    void deviceRemoveSendsForceOnlyWhenAskedAndExitsWithTheErrnoOfARefusal() {
        assertThat(run("device", "remove", "disk1").exitCode()).isZero();
        assertThat(run("device", "remove", "--force", "disk0").exitCode()).isZero();
        CliRun none = run("device", "remove", "disk0");
        assertThat(none.exitCode()).isEqualTo(6);
        assertThat(none.err()).startsWith("blksnap: device remove: ENXIO (6): ");
        CliRun taken = run("device", "add", "gone=/y.img");
        assertThat(taken.exitCode()).isEqualTo(17);
        assertThat(taken.err()).contains("EEXIST (17)");
        assertThat(devices.calls).containsExactly("remove disk1", "remove disk0 force", "remove disk0",
                "add gone /y.img 0");
    }

    @Test
    void anUnreachableDaemonExits111NamingTheSocket() {
        Path nowhere = dir.resolve("nowhere.sock");
        CliRun r = CliRun.run(nowhere, "version");
        assertThat(r.exitCode()).isEqualTo(111);
        assertThat(r.err()).contains("cannot reach blksnapd at " + nowhere);
        Path noDataDir = dir.resolve("no-such-data-dir/control.sock");
        CliRun backup = CliRun.run(noDataDir, "backup", "--repo", dir.resolve("repo").toString(), "--device", "disk0");
        assertThat(backup.exitCode()).as("a backup whose default storage directory, the daemon's, is missing: %s", backup)
                .isEqualTo(111);
        assertThat(backup.err()).contains("cannot reach blksnapd at " + noDataDir).contains("default --storage-dir");
    }

    @Test
    void jsonOutputIsOneJsonObjectPerCommand() {
        JsonMapper json = JsonMapper.builder().build();
        CliRun create = run("--json", "snapshot", "create", "--device", "disk0");
        String id = json.readTree(create.out()).path("id").asString();
        assertThat(UUID.fromString(id)).isNotNull();
        assertThat(json.readTree(run("--json", "version").out()).path("version").asString()).isEqualTo("1.0.0.0");
        assertThat(json.readTree(run("--json", "params").out()).path("params").path("diff_storage_minimum").asLong())
                .isEqualTo(2097152);
        assertThat(json.readTree(run("--json", "tracker", "collect").out()).path("trackers")).hasSize(2);
        CliRun err = run("--json", "snapshot", "destroy", "--id", UUID.randomUUID().toString());
        assertThat(err.exitCode()).isEqualTo(19);
        assertThat(json.readTree(err.out()).path("error").path("name").asString()).isEqualTo("ENODEV");
    }

    @Test
    void paramsShowsGetsAndSets() {
        assertThat(run("params").out()).contains("diff_storage_minimum=2097152");
        assertThat(run("params", "chunk_minimum_shift").line()).isEqualTo("18");
        assertThat(run("params", "diff_storage_minimum=65536").line()).isEqualTo("diff_storage_minimum=65536");
        assertThat(engine.params.get("diff_storage_minimum")).isEqualTo(65536);
        CliRun bad = run("params", "no_such_param");
        assertThat(bad.exitCode()).isEqualTo(22);
        assertThat(bad.err()).contains("unknown parameter");
    }

    @Test
    void readCbtMapWritesTheRawMapInOneMiBPiecesHonouringTheOffset() throws Exception {
        Path out = dir.resolve("cbt.map");
        CliRun r = run("tracker", "read-cbt-map", "--device", "disk0", "--file", out.toString(), "--offset", "100");
        assertThat(r.exitCode()).as(r.toString()).isZero();
        byte[] map = Files.readAllBytes(out);
        assertThat(map).hasSize(engine.mapBlocks - 100);
        for (int i = 0; i < map.length; i += 4099) {
            assertThat(map[i]).isEqualTo((byte) ((100 + i) % 251));
        }
        assertThat(engine.calls).filteredOn(c -> c.startsWith("readCbtMap"))
                .containsExactly("readCbtMap disk0 100 1048576", "readCbtMap disk0 1048676 1048576",
                        "readCbtMap disk0 2097252 1048493");
    }

    @Test
    void readCbtMapWithALengthReadsJustThat() throws Exception {
        Path out = dir.resolve("cbt.map");
        assertThat(run("tracker", "read-cbt-map", "--device", "disk0", "--file", out.toString(), "--offset", "5",
                "--length", "3").exitCode()).isZero();
        assertThat(Files.readAllBytes(out)).containsExactly(5, 6, 7);
    }

    @Test
    void upstreamV1VerbsWorkAsAliases() throws Exception {
        String id = run("snapshot_create", "-d", "disk0").line();
        assertThat(run("snapshot_appendstorage", "-i", id, "-f", dir.resolve("ds").toString(), "--size", "1M")
                .exitCode()).isZero();
        assertThat(run("snapshot_take", "-i", id).exitCode()).isZero();
        assertThat(run("snapshot_collect").line()).isEqualTo(id);
        assertThat(run("snapshot_waitevent", "-i", id, "-t", "100").line()).startsWith("low_free_space");
        assertThat(run("tracker_collect").out()).contains("disk0 generation=");
        Path map = dir.resolve("m");
        assertThat(run("tracker_readcbtmap", "-d", "disk0", "-f", map.toString()).exitCode()).isZero();
        assertThat(map).hasSize(engine.mapBlocks);
        assertThat(run("tracker_markdirtyblock", "-d", "disk0", "-r", "0:8", "-r", "64:8").exitCode()).isZero();
        assertThat(engine.calls).contains("markDirty disk0 [0:8, 64:8]");
        assertThat(run("tracker_remove", "-d", "disk0").exitCode()).isZero();
        assertThat(run("snapshot_destroy", "-i", id).exitCode()).isZero();
        assertThat(run("snapshot_destroy", "-i", id).exitCode()).isEqualTo(19);
    }

    @Test
    void v1OptionSpellingsInEveryFormReachTheNewCommands() {
        String id = run("snapshot_create", "--device", "disk0").line();
        assertThat(run("snapshot_appendstorage", "-i=" + id, "-f" + dir.resolve("a"), "-s", "1M", "-r", "0:8",
                "--range=16:8").exitCode()).isZero();
        assertThat(engine.appended).singleElement().satisfies(s -> {
            assertThat(s.path()).isEqualTo(dir.resolve("a"));
            assertThat(s.createSizeBytes()).isEqualTo(1L << 20);
            assertThat(s.ranges()).containsExactly(new SectorRange(0, 8), new SectorRange(16, 8));
        });
        assertThat(run("tracker_markdirtyblock", "-d", "disk0", "--ranges", "0:8").exitCode()).isZero();
        assertThat(engine.calls).contains("markDirty disk0 [0:8]");
        assertThat(run("snapshot_waitevent", "--id", id, "--timeout=100").line()).startsWith("low_free_space");
        CliRun unknown = run("snapshot_take", "-i", id, "-x");
        assertThat(unknown.exitCode()).isEqualTo(64);
        assertThat(unknown.err()).contains("Unknown option: '-x'");
    }

    @Test
    void stretchSnapshotTakesItsLimitInMibUnlessSuffixed() throws Exception {
        engine.params.set("diff_storage_minimum", 2048);
        String id = run("snapshot", "create", "--device", "disk0").line();
        UUID uuid = UUID.fromString(id);
        Path storage = Files.createDirectory(dir.resolve("storage"));
        CompletableFuture<CliRun> stretch = CompletableFuture.supplyAsync(() -> run("--json", "stretch_snapshot",
                "-i", id, "-p", storage.toString(), "-l", "1", "--poll", "50"));
        await().until(() -> engine.appended.size() == 1);
        engine.queue(uuid, new SnapshotEvent.LowFreeSpace(System.nanoTime(), 2048));
        awaitTaken(uuid);
        run("snapshot", "destroy", "--id", id);
        CliRun r = stretch.get(10, TimeUnit.SECONDS);
        assertThat(r.exitCode()).as(r.toString()).isZero();
        JsonMapper json = JsonMapper.builder().build();
        List<JsonNode> lines = r.out().lines().map(json::readTree).toList();
        assertThat(lines).extracting(n -> n.path("stretch").asString())
                .containsExactly("appended", "limit_reached", "snapshot_gone");
        assertThat(lines.get(1).path("limitBytes").asLong()).as("-l 1 is 1 MiB").isEqualTo(1L << 20);
    }

    @Test
    void theHelpListsTheV1VerbsAndAV1VerbShowsItsCommandsHelp() {
        CliRun top = run("--help");
        assertThat(top.exitCode()).isZero();
        assertThat(top.out()).containsPattern("snapshot_appendstorage +(= )?snapshot append-storage")
                .contains("stretch_snapshot").contains("tracker_markdirtyblock");
        CliRun v1 = run("snapshot_appendstorage", "--help");
        assertThat(v1.exitCode()).as(v1.toString()).isZero();
        assertThat(v1.out()).startsWith("Usage: blksnap snapshot append-storage");
    }

    @Test
    void imagesPrintsNameImageAndUriPerDevice() {
        String id = run("snapshot", "create", "--device", "disk0", "--device", "disk1").line();
        CliRun early = run("snapshot", "images", "--id", id);
        assertThat(early.exitCode()).isEqualTo(19);
        run("snapshot", "take", "--id", id);
        assertThat(run("snapshot", "images", "--id", id).out()).isEqualTo(
                "disk0 blksnap-image0 nbd://127.0.0.1:10809/blksnap-image0\n"
                        + "disk1 blksnap-image1 nbd://127.0.0.1:10809/blksnap-image1\n");
    }

    @Test
    void appendStorageSendsPathsMadeAbsoluteAgainstTheToolsWorkingDirectory() {
        String id = run("snapshot", "create", "--device", "disk0").line();
        assertThat(run("snapshot", "append-storage", "--id", id, "--file", "rel/diff.img", "--size", "1M").exitCode())
                .isZero();
        assertThat(run("snapshot", "append-storage", "--id", id, "--file", dir.resolve("diff.img").toString(),
                "--size", "64M").exitCode()).isZero();
        assertThat(engine.appended).extracting(StorageSpec::path)
                .containsExactly(Path.of("rel/diff.img").toAbsolutePath(), dir.resolve("diff.img"));
        assertThat(engine.appended).extracting(StorageSpec::createSizeBytes).containsExactly(1L << 20, 64L << 20);
    }

    @Test
    void stretchAppendsAFilePerLowSpaceEventUpToTheLimitAndExitsZeroWhenTheSnapshotIsDestroyed() throws Exception {
        Stretching st = startStretch("1536K");
        String id = st.id().toString();
        UUID uuid = st.id();
        CompletableFuture<CliRun> stretch = st.run();
        engine.queue(uuid, new SnapshotEvent.LowFreeSpace(System.nanoTime(), 2048));
        await().until(() -> engine.appended.size() == 2);
        engine.queue(uuid, new SnapshotEvent.LowFreeSpace(System.nanoTime(), 2048));
        engine.queue(uuid, new SnapshotEvent.Corrupted(System.nanoTime(), "disk0", 28));
        awaitTaken(uuid);
        run("snapshot", "destroy", "--id", id);
        CliRun r = stretch.get(10, TimeUnit.SECONDS);
        assertThat(r.exitCode()).as(r.toString()).isZero();
        assertThat(engine.appended).extracting(s -> s.path().getFileName().toString())
                .containsExactly("diff_storage#0", "diff_storage#1");
        assertThat(engine.appended).extracting(s -> s.createSizeBytes()).containsExactly(1L << 20, 512L << 10);
        JsonMapper json = JsonMapper.builder().build();
        var lines = r.out().lines().map(json::readTree).map(n -> n.path("stretch").asString()).toList();
        assertThat(lines).containsExactly("appended", "appended", "limit_reached", "event", "snapshot_gone");
        JsonNode corrupted = json.readTree(r.out().lines().toList().get(3)).path("event");
        assertThat(corrupted.path("errno").asInt()).isEqualTo(28);
        assertThat(corrupted.path("errnoName").asString()).isEqualTo("ENOSPC");
    }

    /**
     * As upstream 1200 (storage on a small tmpfs): the filesystem fills up before the limit. The
     * stretch appends what fits, reports the failure once, and when room appears again it appends
     * the rest on its own, without waiting for another event (none would come).
     */
    @Test
    void stretchOnAFullFilesystemAppendsWhatFitsReportsTheFailureOnceAndRetriesUntilItFits() throws Exception {
        engine.roomBytes = (1 << 20) + (300 << 10);
        Stretching st = startStretch("2G");
        String id = st.id().toString();
        UUID uuid = st.id();
        CompletableFuture<CliRun> stretch = st.run();
        engine.queue(uuid, new SnapshotEvent.LowFreeSpace(System.nanoTime(), 2048));
        await().until(() -> engine.appended.size() == 2);
        engine.queue(uuid, new SnapshotEvent.LowFreeSpace(System.nanoTime(), 2048));
        // Three rounds of halving tries (4 or 5 sizes each) for diff_storage#2: several polls failed,
        // and the failure must still be reported once.
        await().until(() -> engine.appendAttempts("diff_storage#2") >= 15);
        engine.roomAtNextWait = 64L << 20; // between two rounds of tries, as a filesystem freed meanwhile
        await().until(() -> engine.appended.size() == 3);
        engine.queue(uuid, new SnapshotEvent.Corrupted(System.nanoTime(), "disk0", 28));
        awaitTaken(uuid);
        run("snapshot", "destroy", "--id", id);
        CliRun r = stretch.get(10, TimeUnit.SECONDS);
        assertThat(r.exitCode()).as(r.toString()).isZero();
        assertThat(engine.appended).extracting(s -> s.createSizeBytes()).containsExactly(1L << 20, 256L << 10, 1L << 20);
        JsonMapper json = JsonMapper.builder().build();
        List<JsonNode> lines = r.out().lines().map(json::readTree).toList();
        assertThat(lines).extracting(n -> n.path("stretch").asString())
                .containsExactly("appended", "appended", "grow_failed", "appended", "event", "snapshot_gone");
        assertThat(lines.get(1).path("requestedBytes").asLong()).isEqualTo(1L << 20);
        assertThat(lines.get(2).path("errnoName").asString()).isEqualTo("ENOSPC");
        assertThat(lines.get(2).path("file").asString()).endsWith("diff_storage#2");
        assertThat(lines.get(3).path("file").asString()).endsWith("diff_storage#2");
    }

    private record Stretching(UUID id, CompletableFuture<CliRun> run) {
    }

    /**
     * Creates a snapshot (2048-sector minimum) and starts {@code snapshot stretch --json} on it with
     * that limit and a 50 ms poll; returns once it appended the first file for the creation event.
     */
    private Stretching startStretch(String limit) throws Exception {
        engine.params.set("diff_storage_minimum", 2048);
        String id = run("snapshot", "create", "--device", "disk0").line();
        Path storage = Files.createDirectory(dir.resolve("storage"));
        CompletableFuture<CliRun> stretch = CompletableFuture.supplyAsync(() -> run("--json", "snapshot", "stretch",
                "--id", id, "--dir", storage.toString(), "--limit", limit, "--poll", "50"));
        await().until(() -> engine.appended.size() == 1);
        return new Stretching(UUID.fromString(id), stretch);
    }

    /**
     * Waits until the stretch has taken every queued event, so that a destroy cannot discard one
     * (the stretch reports an event it took before it sees the snapshot gone).
     */
    private void awaitTaken(UUID id) {
        await().until(() -> engine.pendingEvents(id) == 0);
    }
}
