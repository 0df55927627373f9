package org.blksnap.dist;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.blksnap.cli.Main;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

/**
 * The packages that {@code dist/build.sh} made in the package phase ({@code mvn -Pdist verify}, which
 * {@code bin/test} runs): the tarball unpacked into a fresh directory serves and snapshots a device
 * with no JDK reachable, tells systemd it is ready, and stops cleanly; its completion (bash, and zsh
 * through bashcompinit) and man pages cover the command model; the .deb holds the tree, the unit and the config; the unit passes
 * {@code systemd-analyze verify}.
 */
@Tag("system")
class DistributionIT {
    private static final Path DIST = Path.of("target/dist");
    private static Path work;
    private static Path tree;
    private static Path fakeBin;
    private static final List<Process> STARTED = new ArrayList<>();

    @BeforeAll
    static void unpack() throws Exception {
        work = Files.createTempDirectory("blksnap-dist-it");
        run(List.of("tar", "xzf", tarball().toString(), "-C", work.toString()), Map.of(), 120);
        try (Stream<Path> s = Files.list(work)) {
            tree = s.filter(p -> p.getFileName().toString().startsWith("blksnap-")).findFirst().orElseThrow();
        }
        // A PATH with only the shell tools the launchers use, and a "java" that fails loudly: the
        // installed tree must run its own runtime, never a JDK found on the machine.
        fakeBin = Files.createDirectories(work.resolve("fakebin"));
        for (String t : List.of("bash", "env", "readlink", "dirname", "find", "ls", "head", "mkdir", "rm", "sed",
                "cat", "basename", "mv")) {
            Path real = Path.of(run(List.of("bash", "-c", "command -v " + t), Map.of(), 10).trim());
            Files.createSymbolicLink(fakeBin.resolve(t), real);
        }
        Path java = fakeBin.resolve("java");
        Files.writeString(java, "#!/bin/sh\necho 'a java from PATH was used' >&2\nexit 99\n");
        Files.setPosixFilePermissions(java, PosixFilePermissions.fromString("rwxr-xr-x"));
    }

    @AfterAll
    static void cleanUp() throws Exception {
        for (Process p : STARTED) {
            p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
        if (work != null) {
            run(List.of("rm", "-rf", work.toString()), Map.of(), 60);
        }
    }

    private static Path tarball() throws IOException {
        try (Stream<Path> s = Files.list(DIST)) {
            return s.filter(p -> p.toString().endsWith(".tar.gz")).findFirst()
                    .orElseThrow(() -> new AssertionError("no tarball in " + DIST + "; dist/build.sh did not run"));
        }
    }

    private static Path deb() throws IOException {
        try (Stream<Path> s = Files.list(DIST)) {
            return s.filter(p -> p.toString().endsWith(".deb")).findFirst()
                    .orElseThrow(() -> new AssertionError("no .deb in " + DIST + "; dist/build.sh did not run"));
        }
    }

    /** The environment of a user with no JDK: only the fake PATH, a home for the CLI's cache. */
    private static Map<String, String> noJdk(Map<String, String> extra) {
        Map<String, String> env = new java.util.HashMap<>(Map.of("PATH", fakeBin.toString(),
                "HOME", work.resolve("home").toString()));
        env.putAll(extra);
        return env;
    }

    private static String run(List<String> cmd, Map<String, String> env, int seconds) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        if (!env.isEmpty()) {
            pb.environment().clear();
            pb.environment().putAll(env);
        }
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(seconds, TimeUnit.SECONDS)).as("%s finished", cmd).isTrue();
        assertThat(p.exitValue()).as("%s exit status; output:%n%s", cmd, out).isZero();
        return out;
    }

    @Test
    void theTarballServesAndSnapshotsWithoutAJdkAndTellsSystemdWhenReady() throws Exception {
        Path data = work.resolve("data");
        Path nbd = work.resolve("nbd.sock");
        Path notify = work.resolve("notify.sock");
        // The systemd side of NOTIFY_SOCKET: a datagram socket that prints what it receives.
        Process receiver = new ProcessBuilder("python3", "-u", "-c", """
                import socket, sys
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                s.bind(sys.argv[1])
                print("BOUND", flush=True)
                while True:
                    print(s.recv(4096).decode().replace("\\n", " "), flush=True)
                """, notify.toString()).redirectErrorStream(true).start();
        STARTED.add(receiver);
        BlockingQueue<String> notes = lines(receiver);
        assertThat(notes.poll(30, TimeUnit.SECONDS)).isEqualTo("BOUND");

        ProcessBuilder pb = new ProcessBuilder(tree.resolve("bin/blksnapd").toString(), "--data-dir", data.toString(),
                "--listen", "none", "--socket", nbd.toString(), "--device", "disk0=" + work.resolve("disk0.img") + ":64M")
                .redirectOutput(work.resolve("daemon.out").toFile()).redirectError(work.resolve("daemon.err").toFile());
        pb.environment().clear();
        pb.environment().putAll(noJdk(Map.of("NOTIFY_SOCKET", notify.toString())));
        Process daemon = pb.start();
        STARTED.add(daemon);
        String ready = notes.poll(90, TimeUnit.SECONDS);
        assertThat(ready).as("READY from the daemon; its stderr:%n%s", Files.exists(work.resolve("daemon.err"))
                ? Files.readString(work.resolve("daemon.err")) : "").isNotNull()
                .contains("READY=1").contains("MAINPID=" + daemon.pid());
        assertThat(data.resolve("control.sock")).exists();

        Map<String, String> cli = noJdk(Map.of("BLKSNAP_CONTROL", data.resolve("control.sock").toString()));
        String blksnap = tree.resolve("bin/blksnap").toString();
        String id = run(List.of(blksnap, "snapshot", "create", "--device", "disk0"), cli, 60).trim();
        run(List.of(blksnap, "snapshot", "append-storage", "--id", id, "--file", work.resolve("diff.img").toString(),
                "--size", "32M"), cli, 60);
        run(List.of(blksnap, "snapshot", "take", "--id", id), cli, 60);
        String images = run(List.of(blksnap, "snapshot", "images", "--id", id), cli, 60);
        assertThat(images).startsWith("disk0 blksnap-image0 ");
        String uri = images.trim().split(" ")[2];
        // A real NBD client (from the test's own PATH) reads the image.
        assertThat(run(List.of("nbdinfo", "--size", uri), Map.of(), 60).trim()).isEqualTo(String.valueOf(64L << 20));
        run(List.of(blksnap, "snapshot", "destroy", "--id", id), cli, 60);
        assertThat(run(List.of(blksnap, "--version"), cli, 60)).contains("blksnap tool");

        daemon.toHandle().destroy(); // SIGTERM: the module's exit order
        assertThat(daemon.waitFor(60, TimeUnit.SECONDS)).isTrue();
        // 128 + SIGTERM: how a JVM ends after its shutdown hooks ran; the unit lists it in SuccessExitStatus.
        assertThat(daemon.exitValue()).as("exit status after SIGTERM").isEqualTo(143);
        assertThat(notes.poll(10, TimeUnit.SECONDS)).contains("STOPPING=1");
        assertThat(Files.readString(work.resolve("daemon.err"))).contains("stopped").doesNotContain("from PATH");
    }

    /**
     * The tool's class-data archive: the first call trains it (Training: text and JSON calls), so a
     * control call then takes its classes (picocli's too) from it and reads no class from a jar; a
     * newer jar makes the next call train a fresh one.
     */
    @Test
    void theToolsClassArchiveIsTrainedOnceAndRefreshedWhenTheJarChanges() throws Exception {
        Path cache = work.resolve("home/.cache/blksnap");
        run(List.of("rm", "-rf", cache.toString()), Map.of(), 30);
        String blksnap = tree.resolve("bin/blksnap").toString();
        assertThat(run(List.of(blksnap, "--version"), noJdk(Map.of()), 120)).contains("blksnap tool");
        Path jsa;
        try (Stream<Path> s = Files.list(cache)) {
            jsa = s.filter(p -> p.toString().endsWith(".jsa")).findFirst().orElseThrow();
        }
        assertThat(Files.size(jsa)).isGreaterThan(1 << 20);

        // -Xshare:on: the JVM refuses to start unless it can use the archive with this class path
        Path log = work.resolve("class-load.log");
        ProcessBuilder pb = new ProcessBuilder(tree.resolve("runtime/bin/java").toString(), "-Xshare:on",
                "-XX:SharedArchiveFile=" + jsa, "-Xlog:class+load=info:file=" + log, "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC", "-cp", tree.resolve("lib") + "/*", "org.blksnap.cli.Main", "--control",
                work.resolve("no-daemon.sock").toString(), "device", "list").redirectErrorStream(true);
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as(out).isEqualTo(111);
        List<String> loaded = Files.readAllLines(log);
        // picocli's too: the build rewrote its Java 5 class files as Java 8 ones (src/build/RetargetJar.java),
        // which CDS archives
        List<String> fromJars = loaded.stream().filter(l -> l.contains("source: file:") || l.contains("source: jar:"))
                .toList();
        assertThat(fromJars).as("classes read from a jar instead of the archive").isEmpty();
        assertThat(loaded.stream().filter(l -> l.contains("] org.blksnap.") && l.contains("shared objects file")).count())
                .isGreaterThan(20);
        assertThat(loaded.stream().filter(l -> l.contains("] picocli.CommandLine ") && l.contains("shared objects file")))
                .hasSize(1);

        Path jar;
        try (Stream<Path> s = Files.list(tree.resolve("lib"))) {
            jar = s.filter(f -> f.getFileName().toString().startsWith("blksnap-")).findFirst().orElseThrow();
        }
        Files.setLastModifiedTime(jar, java.nio.file.attribute.FileTime.fromMillis(System.currentTimeMillis()));
        run(List.of(blksnap, "--version"), noJdk(Map.of()), 120);
        assertThat(Files.getLastModifiedTime(jsa).toMillis()).as("a fresh archive after the jar changed")
                .isGreaterThanOrEqualTo(Files.getLastModifiedTime(jar).toMillis());
    }

    /**
     * The launcher's JVM per call: a backup the resident agent may run gets the quick JVM (C1, the
     * serial collector); one that runs in the tool (S3, --agent off, or the tool's relaunch with
     * BLKSNAP_IN_PROCESS_BACKUP, cli/Relaunch.java), restore and verify get the optimizing compiler
     * and the throughput collector.
     */
    @Test
    void theLauncherGivesInProcessBackupsTheOptimizingCompiler() throws Exception {
        String blksnap = tree.resolve("bin/blksnap").toString();
        record Call(List<String> args, Map<String, String> env, boolean quick) {
        }
        List<Call> calls = List.of(
                new Call(List.of("backup", "--repo", "/r", "--help"), Map.of(), true),
                new Call(List.of("backup", "--repo", "s3://bucket/p", "--help"), Map.of(), false),
                new Call(List.of("backup", "--agent", "off", "--help"), Map.of(), false),
                new Call(List.of("backup", "--repo", "/r", "--help"), Map.of("BLKSNAP_IN_PROCESS_BACKUP", "1"), false),
                new Call(List.of("restore", "--help"), Map.of(), false),
                new Call(List.of("--json", "--control", "/c.sock", "restore", "--repo", "backup", "--help"), Map.of(), false),
                new Call(List.of("--json", "--control", "/c.sock", "backup", "--repo", "/r", "--help"), Map.of(), true),
                new Call(List.of("version", "--help"), Map.of(), true));
        for (Call c : calls) {
            Map<String, String> env = new java.util.HashMap<>(c.env());
            env.put("BLKSNAP_JAVA_OPTS", "-XX:+PrintFlagsFinal");
            List<String> cmd = new java.util.ArrayList<>(List.of(blksnap));
            cmd.addAll(c.args());
            String out = run(cmd, noJdk(env), 120);
            assertThat(out).as("%s %s", c.args(), c.env())
                    .containsPattern("TieredStopAtLevel += " + (c.quick() ? "1" : "4") + " ")
                    .containsPattern((c.quick() ? "UseSerialGC" : "UseParallelGC") + " += true ");
        }
    }

    private static BlockingQueue<String> lines(Process p) {
        BlockingQueue<String> q = new LinkedBlockingQueue<>();
        Thread.ofVirtual().start(() -> {
            try (var r = p.inputReader(StandardCharsets.UTF_8)) {
                String line;
                while ((line = r.readLine()) != null) {
                    q.add(line);
                }
            } catch (IOException e) {
                q.add("receiver failed: " + e);
            }
        });
        return q;
    }

    @Test
    void bashCompletionCompletesEveryCommandAndOptionOfTheModel() throws Exception {
        Path script = tree.resolve("share/bash-completion/completions/blksnap");
        assertCompletesTheModel(new Main(), (words, current) -> complete(script, words, current));
    }

    /**
     * The zsh completion file, autoloaded from {@code $fpath} after {@code compinit} as zsh does it:
     * the first completion loads it (and it completes that word), later ones call what it registered
     * through bashcompinit. {@code compadd} is replaced by a function that prints what it is given,
     * so the candidates are seen without a terminal.
     */
    @Test
    void zshCompletionCompletesEveryCommandAndOptionOfBothModels() throws Exception {
        ExternalTool.require("zsh");
        Path functions = tree.resolve("share/zsh/site-functions");
        assertThat(functions.resolve("_blksnap")).exists();
        assertThat(Files.readString(functions.resolve("_blksnap"))).startsWith("#compdef blksnap blksnapd\n");
        Path driver = work.resolve("complete.zsh");
        Files.writeString(driver, """
                # $1: a directory for fpath; $2: the command; the rest: the words, the last being completed
                fpath=($1 $fpath); service=$2; shift 2
                autoload -U compinit && compinit -u -D
                compadd() { local a; for a in "$@"; do [[ $a == -* && $a != --* || $a == -- ]] || print -r -- "$a"; done }
                compset() { return 1 }
                words=("$@"); CURRENT=$#
                [[ $_comps[$service] == _blksnap ]] || { print "not _blksnap: $_comps[$service]"; exit 2 }
                out=$(mktemp); _blksnap > $out; first=("${(@f)$(<$out)}"); rm -f $out
                [[ $_comps[$service] == "_bash_complete -F _complete_$service -o default" ]] \\
                  || { print "not registered: $_comps[$service]"; exit 3 }
                second=("${(@f)$(eval $_comps[$service])}")
                [[ "${first[*]}" == "${second[*]}" ]] || { print "first: $first\nsecond: $second"; exit 4 }
                print -r -- "${second[*]}"
                """);
        for (Object command : List.of(new Main(), new org.blksnap.daemon.Blksnapd())) {
            assertCompletesTheModel(command, (words, current) -> {
                List<String> cmd = new ArrayList<>(List.of("zsh", "-f", driver.toString(), functions.toString(),
                        words.getFirst()));
                cmd.addAll(words);
                cmd.add(current);
                return run(cmd, Map.of("PATH", "/usr/bin:/bin", "HOME", work.toString()), 30).trim();
            });
        }
    }

    /** What a completion offers for the words typed so far and the word being completed. */
    private interface Completion {
        String offer(List<String> words, String current) throws Exception;
    }

    /** Every subcommand and every visible long option of every command of the model is offered. */
    private static void assertCompletesTheModel(Object command, Completion completion) throws Exception {
        CommandSpec root = new CommandLine(command).getCommandSpec();
        for (CommandSpec c : CommandModel.commands(root)) {
            List<String> words = new ArrayList<>(List.of(c.qualifiedName(" ").split(" ")));
            // The subcommands of c, completed from an empty word.
            if (!c.subcommands().isEmpty()) {
                String subs = completion.offer(words, "");
                for (String sub : c.subcommands().keySet()) {
                    assertThat(subs.split(" ")).as("completion of '%s '", String.join(" ", words)).contains(sub);
                }
            }
            // The options of c, completed from "--".
            String opts = completion.offer(words, "--");
            for (OptionSpec o : c.options()) {
                for (String n : o.names()) {
                    if (n.startsWith("--") && !o.hidden()) {
                        assertThat(opts.split(" ")).as("completion of '%s --'", String.join(" ", words)).contains(n);
                    }
                }
            }
        }
    }

    /** What the completion function offers for {@code words + current}, as bash would call it. */
    private static String complete(Path script, List<String> words, String current) throws Exception {
        List<String> all = new ArrayList<>(words);
        all.add(current);
        StringBuilder array = new StringBuilder();
        for (String w : all) {
            array.append('\'').append(w).append("' ");
        }
        String bash = "source '" + script + "'; COMP_WORDS=(" + array + "); COMP_CWORD=" + (all.size() - 1)
                + "; COMP_LINE='" + String.join(" ", all) + "'; COMP_POINT=${#COMP_LINE}; _complete_blksnap 2>/dev/null;"
                + " echo \"${COMPREPLY[*]}\"";
        return run(List.of("bash", "-c", bash), Map.of(), 30).trim();
    }

    @Test
    void manPagesRenderAndCoverEveryCommandAndOption() throws Exception {
        Path man1 = tree.resolve("share/man/man1");
        CommandSpec root = new CommandLine(new Main()).getCommandSpec();
        for (CommandSpec c : CommandModel.commands(root)) {
            Path page = man1.resolve(c.qualifiedName("-") + ".1");
            assertThat(page).as("man page of %s", c.qualifiedName(" ")).exists();
            String text = run(List.of("man", "-l", "-P", "cat", page.toString()), Map.of("PATH", "/usr/bin:/bin",
                    "MANWIDTH", "100", "LANG", "C.UTF-8"), 30);
            assertThat(text).contains(c.qualifiedName(" "));
            for (OptionSpec o : c.options()) {
                if (!o.hidden()) {
                    assertThat(text).as("%s in %s", o.longestName(), page).contains(o.longestName());
                }
            }
        }
        assertThat(man1.resolve("blksnapd.1")).exists();
    }

    @Test
    void theDebInstallsTheTreeTheLinksTheUnitAndTheConfig() throws Exception {
        String info = run(List.of("dpkg-deb", "--info", deb().toString()), Map.of(), 60);
        assertThat(info).contains("Package: blksnap").contains("Architecture: ").contains("conffiles");
        String contents = run(List.of("dpkg-deb", "--contents", deb().toString()), Map.of(), 60);
        assertThat(contents)
                .contains("./usr/lib/blksnap/bin/blksnapd", "./usr/lib/blksnap/bin/blksnap",
                        "./usr/lib/blksnap/runtime/bin/java", "./etc/blksnap/blksnapd.conf",
                        "./lib/systemd/system/blksnapd.service", "./usr/share/man/man1/blksnap.1.gz",
                        "./usr/share/man/man1/blksnapd.1.gz", "./usr/share/bash-completion/completions/blksnap",
                        "./usr/share/zsh/vendor-completions/_blksnap")
                .contains("./usr/bin/blksnapd -> ../lib/blksnap/bin/blksnapd")
                .contains("./usr/bin/blksnap -> ../lib/blksnap/bin/blksnap")
                .doesNotContain("/usr/lib/jvm");
        assertThat(run(List.of("dpkg-deb", "--field", deb().toString(), "Version"), Map.of(), 30).trim())
                .matches("[0-9][0-9A-Za-z.+~]*-[0-9]+");
    }

    @Test
    void theUnitPassesSystemdAnalyzeVerify() throws Exception {
        Path unit = work.resolve("blksnapd.service");
        Files.writeString(unit, Files.readString(tree.resolve("share/blksnap/blksnapd.service"))
                .replace("/usr/bin/blksnapd", tree.resolve("bin/blksnapd").toString()));
        ProcessBuilder pb = new ProcessBuilder("systemd-analyze", "verify", unit.toString()).redirectErrorStream(true);
        pb.environment().put("MANPATH", tree.resolve("share/man").toString());
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as(out).isZero();
        assertThat(out).as("warnings of systemd-analyze verify").isBlank();
        assertThat(Files.readString(unit)).contains("Type=notify", "StateDirectory=blksnap", "RuntimeDirectory=blksnap",
                "TimeoutStopSec=", "MemoryMax=", "SuccessExitStatus=143");
    }
}
