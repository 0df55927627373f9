package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.blksnap.cli.CliRun;
import org.blksnap.ctrl.ControlServer;
import org.blksnap.daemon.Daemon;
import org.blksnap.daemon.DaemonConfig;
import org.blksnap.daemon.DeviceSpec;
import org.blksnap.testing.ExternalTool;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

/**
 * Who may use the control API, with the real tool run as another user ({@code setpriv} as
 * {@code nobody}): the daemon runs with {@code --control-group users} and one {@code --allow-path}
 * directory. A caller whose primary group is {@code users} is admitted and may name files only in
 * the allowed directory (symbolic links out of it, and files it could not write, are refused); a
 * caller that reaches the 0660 socket through a supplementary group without being a member of
 * {@code users} in the group database is refused by the daemon with EPERM and a log line; root is
 * unchanged (any path).
 */
@Tag("system")
class ControlAccessTest {
    private static final Duration T = Duration.ofSeconds(120);
    private static final String GROUP = "users";

    Path base;
    Path allowed;
    Path outside;
    Path control;
    static Path classpath;
    Daemon daemon;
    ListAppender<ILoggingEvent> log;

    @BeforeAll
    static void copyTheToolWhereNobodyCanReadIt() throws Exception {
        ExternalTool.require("root", "setpriv");
        classpath = readableClasspath();
    }

    @AfterAll
    static void removeTheCopy() {
        if (classpath != null) {
            ExternalTool.run(T, "rm", "-rf", classpath.toString());
        }
    }

    @BeforeEach
    void start() throws Exception {
        base = Files.createTempDirectory(Path.of("/tmp"), "blksnap-access-");
        Files.setPosixFilePermissions(base, PosixFilePermissions.fromString("rwxr-xr-x"));
        allowed = Files.createDirectory(base.resolve("allowed"));
        Files.setPosixFilePermissions(allowed, PosixFilePermissions.fromString("rwxrwxrwx"));
        outside = Files.createDirectory(base.resolve("outside"));
        Path ctl = Files.createDirectory(base.resolve("ctl"));
        Files.setPosixFilePermissions(ctl, PosixFilePermissions.fromString("rwxr-xr-x"));
        control = ctl.resolve("control.sock");
        Path data = base.resolve("data");
        daemon = Daemon.start(new DaemonConfig(data, List.of(new DeviceSpec("d0", base.resolve("d0.img"), 16L << 20)),
                null, base.resolve("nbd.sock"), control, List.of("diff_storage_minimum=16384"), null, false, "INFO",
                null, org.blksnap.nbd.NbdServer.Config.defaults().withMaxConnections(16), null, GROUP, List.of(allowed)));
        log = new ListAppender<>();
        log.start();
        ((Logger) LoggerFactory.getLogger(ControlServer.class)).addAppender(log);
    }

    @AfterEach
    void stop() throws Exception {
        if (log != null) {
            ((Logger) LoggerFactory.getLogger(ControlServer.class)).detachAppender(log);
        }
        if (daemon != null) {
            daemon.close();
        }
        if (base != null) {
            ExternalTool.run(T, "rm", "-rf", base.toString());
        }
    }

    @Test
    void theSocketIsGroupReadableAndWritableForTheControlGroupOnly() throws Exception {
        PosixFileAttributes a = Files.readAttributes(control, PosixFileAttributes.class);
        assertThat(PosixFilePermissions.toString(a.permissions())).isEqualTo("rw-rw----");
        assertThat(a.group().getName()).isEqualTo(GROUP);
    }

    @Test
    void aCallerOutsideTheGroupDatabaseIsRefusedWithEpermAndALogLine() {
        // nogroup primary, users only as a supplementary group of this process: the socket's mode lets
        // it connect, the daemon's check does not (nobody is not a member of users)
        ExternalTool.Result r = asNobody("--regid=nogroup", "--groups=" + GROUP, "version");
        assertThat(r.exitCode()).as(r.describe()).isEqualTo(1);
        assertThat(r.stderr()).contains("EPERM (1)").contains("user nobody may not use the control API")
                .contains("member of the control group " + GROUP);
        assertThat(log.list).anySatisfy(e -> assertThat(e.getFormattedMessage())
                .contains("refused user nobody (group nogroup)"));
    }

    @Test
    void aCallerWithoutTheGroupCannotEvenConnect() {
        ExternalTool.Result r = asNobody("--regid=nogroup", "--clear-groups", "version");
        assertThat(r.exitCode()).as(r.describe()).isNotZero();
        assertThat(r.stderr()).containsIgnoringCase("permission denied");
    }

    @Test
    void aGroupMemberNamesFilesOnlyInsideTheAllowedDirectories() throws Exception {
        assertThat(member("version").exitCode()).isZero();
        String id = ok(member("snapshot", "create", "--device", "d0"));

        // outside the allowed directory: refused, nothing created
        Path out = outside.resolve("s.img");
        assertRefused(member("snapshot", "append-storage", "--id", id, "--file", out.toString(), "--size", "16M"),
                "outside the allowed directories");
        assertThat(out).doesNotExist();

        // a symbolic link in the allowed directory to a file outside it: refused, the file untouched
        Path victim = Files.writeString(outside.resolve("victim"), "precious");
        Files.createSymbolicLink(allowed.resolve("link.img"), victim);
        assertRefused(member("snapshot", "append-storage", "--id", id, "--file", allowed.resolve("link.img").toString()),
                "resolves to " + victim);
        // a directory link out of it: refused, nothing created there
        Files.createSymbolicLink(allowed.resolve("sub"), outside);
        assertRefused(member("snapshot", "append-storage", "--id", id, "--file",
                allowed.resolve("sub").resolve("x.img").toString(), "--size", "16M"), "outside the allowed directories");
        assertThat(outside.resolve("x.img")).doesNotExist();
        // a file in the allowed directory that the caller could not write itself
        Path rootsFile = Files.write(allowed.resolve("roots.img"), new byte[1 << 20]);
        Files.setPosixFilePermissions(rootsFile, PosixFilePermissions.fromString("rw-r--r--"));
        assertRefused(member("snapshot", "append-storage", "--id", id, "--file", rootsFile.toString()),
                "could not write it");
        assertThat(victim).hasContent("precious");

        // inside: created, taken, images served
        ok(member("snapshot", "append-storage", "--id", id, "--file", allowed.resolve("s.img").toString(),
                "--size", "16M"));
        ok(member("snapshot", "take", "--id", id));
        assertThat(ok(member("snapshot", "images", "--id", id))).contains("blksnap-image0");
        ok(member("snapshot", "destroy", "--id", id));

        // devices: the same rules
        assertRefused(member("device", "add", "d2=" + outside.resolve("d2.img") + ":16M"),
                "outside the allowed directories");
        assertThat(outside.resolve("d2.img")).doesNotExist();
        ok(member("device", "add", "d1=" + allowed.resolve("d1.img") + ":16M"));
        assertThat(ok(member("device", "list"))).contains("d1");
        assertThat(victim).hasContent("precious");
    }

    /**
     * The resident backup agent runs jobs as the daemon's user: a member of the control group is
     * refused it (EPERM) when it insists, and with the default {@code --agent auto} backs up in its
     * own process, under the same rules as any of its calls.
     */
    @Test
    void aGroupMemberBacksUpInItsOwnProcessBecauseTheAgentIsRootsAlone() {
        Path repo = allowed.resolve("repo");
        assertRefused(member("backup", "--agent", "daemon", "--repo", repo.toString(), "--device", "d0",
                "--storage-dir", allowed.toString(), "--storage-limit", "16M"), "only root or that user");
        assertThat(repo).doesNotExist();
        // auto: the agent's EPERM sends the backup to the member's own process, which reads the image
        // over NBD itself; this daemon's NBD socket is root's (mode 0600), so that read is what fails
        ExternalTool.Result r = member("backup", "--repo", repo.toString(), "--device", "d0", "--storage-dir",
                allowed.toString(), "--storage-limit", "16M");
        assertThat(r.exitCode()).as(r.describe()).isEqualTo(74);
        assertThat(r.stderr()).as(r.describe()).doesNotContain("EPERM")
                .contains("cannot connect to nbd+unix:///blksnap-image0").contains("Permission denied");
        assertThat(ok(root("snapshot", "collect"))).as("the member's backup destroyed its snapshot").isEmpty();
    }

    @Test
    void rootKeepsWhatItHad() {
        String id = ok(root("snapshot", "create", "--device", "d0"));
        ok(root("snapshot", "append-storage", "--id", id, "--file", outside.resolve("root.img").toString(),
                "--size", "16M"));
        ok(root("snapshot", "take", "--id", id));
        ok(root("snapshot", "destroy", "--id", id));
        assertThat(outside.resolve("root.img")).exists();
    }

    // ---- helpers ------------------------------------------------------------------------------------

    private static String ok(ExternalTool.Result r) {
        assertThat(r.exitCode()).as(r.describe()).isZero();
        return r.stdout().trim();
    }

    private static String ok(CliRun r) {
        assertThat(r.exitCode()).as(r.toString()).isZero();
        return r.line();
    }

    private static void assertRefused(ExternalTool.Result r, String why) {
        assertThat(r.exitCode()).as(r.describe()).isEqualTo(1);
        assertThat(r.stderr()).as(r.describe()).contains("EPERM (1)").contains(why);
    }

    private CliRun root(String... args) {
        return CliRun.run(control, args);
    }

    /** The tool as nobody with the control group as its primary group. */
    private ExternalTool.Result member(String... args) {
        return asNobody("--regid=" + GROUP, "--clear-groups", args);
    }

    private ExternalTool.Result asNobody(String regid, String groups, String... args) {
        List<String> cmd = new ArrayList<>(List.of("setpriv", "--reuid=nobody", regid, groups, "--",
                Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-XX:-UsePerfData",
                "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-cp", classpath + File.separator + "*" + File.pathSeparator
                        + classpath.resolve("classes"), "org.blksnap.cli.Main", "--control", control.toString()));
        cmd.addAll(Arrays.asList(args));
        return ExternalTool.run(T, cmd);
    }

    /**
     * The tool's classpath copied where nobody can read it (the local Maven repository is root's
     * alone): every jar of this JVM's class path, and the main classes.
     */
    private static Path readableClasspath() throws Exception {
        Path dir = Files.createTempDirectory(Path.of("/tmp"), "blksnap-access-cp-");
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
        for (String entry : System.getProperty("java.class.path").split(File.pathSeparator)) {
            Path p = Path.of(entry);
            if (entry.endsWith(".jar") && Files.isRegularFile(p)) {
                Files.copy(p, dir.resolve(p.getFileName()));
            } else if (Files.isDirectory(p) && p.getFileName().toString().equals("classes")) {
                ExternalTool.run(T, "cp", "-r", p.toString(), dir.resolve("classes").toString()).assertSuccess();
            }
        }
        ExternalTool.run(T, "chmod", "-R", "a+rX", dir.toString()).assertSuccess();
        return dir;
    }
}
