package org.blksnap.testing;

import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.awaitility.core.ConditionTimeoutException;
import org.blksnap.util.FileTrees;

/**
 * A real kernel filesystem on any NBD export, without the nbd kernel module:
 * NBD server → {@code nbdfuse} (libnbd client) → FUSE file → loop device → ext4.
 *
 * <pre>{@code
 * try (NbdFuseMount m = NbdFuseMount.attach("nbd+unix:///disk?socket=/tmp/x/nbd.sock")) {
 *     m.mkfsExt4();
 *     Path root = m.mount();
 *     Files.writeString(root.resolve("hello"), "world");
 *     m.fsfreeze(true); ...; m.fsfreeze(false);
 *     m.unmount();
 * } // always: umount, losetup -d, umount the FUSE dir, kill nbdfuse, delete the work dir
 * }</pre>
 *
 * <p>{@link #close()} undoes every step that was done, in reverse order, even after a failed
 * test, and keeps going when a step fails (the first failure is thrown, the rest suppressed).
 * {@link #attach} first cleans up what a previous crashed JVM left behind (mounts and loop
 * devices under work directories whose owner process is gone). Needs root, {@code nbdfuse},
 * {@code losetup}, {@code mount}/{@code umount}; when they are missing the test is skipped (or
 * fails in CI, see {@link ExternalTool#require}). Every command is bounded by a timeout.
 */
public final class NbdFuseMount implements AutoCloseable {
    /** Work directories are {@code $TMPDIR/blksnap-nbdfuse-*}; the prefix identifies leftovers. */
    public static final String PREFIX = "blksnap-nbdfuse-";
    private static final Duration T = Duration.ofSeconds(60);
    private static final String OWNER_FILE = "owner.pid";

    private final Path work;
    private final Path fuseDir;
    private final Path mountDir;
    private Process nbdfuse;
    private String loopDevice;
    private boolean mounted;

    private NbdFuseMount(Path work) {
        this.work = work;
        this.fuseDir = work.resolve("fuse");
        this.mountDir = work.resolve("mnt");
    }

    /**
     * Starts {@code nbdfuse} on the URI (e.g. {@code nbd+unix:///EXPORT?socket=PATH} or
     * {@code nbd://127.0.0.1:PORT/EXPORT}) and waits until the FUSE file {@link #deviceFile()}
     * shows the export's size.
     */
    public static NbdFuseMount attach(String nbdUri) throws IOException {
        ExternalTool.require("root", "nbdfuse", "losetup", "mount", "umount");
        cleanupLeftovers();
        Path work = Files.createTempDirectory(PREFIX);
        NbdFuseMount m = new NbdFuseMount(work);
        try {
            Files.writeString(work.resolve(OWNER_FILE), Long.toString(ProcessHandle.current().pid()));
            Files.createDirectories(m.fuseDir);
            Files.createDirectories(m.mountDir);
            m.nbdfuse = ExternalTool.start(Map.of(), work, List.of("nbdfuse", "-P", work.resolve("nbdfuse.pid").toString(),
                    m.fuseDir.toString(), nbdUri), work.resolve("nbdfuse.log"));
            try {
                await("nbdfuse up").atMost(Duration.ofSeconds(20)).pollDelay(Duration.ZERO).pollInterval(Duration.ofMillis(50))
                        .until(() -> m.ready() || !m.nbdfuse.isAlive());
            } catch (ConditionTimeoutException e) {
                // reported below, with the log
            }
            if (!m.ready()) {
                throw new IOException("nbdfuse did not come up for " + nbdUri + ": " + m.log());
            }
            return m;
        } catch (IOException | RuntimeException | Error e) {
            try {
                m.close();
            } catch (IOException | RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    private boolean ready() {
        try {
            return Files.exists(work.resolve("nbdfuse.pid")) && Files.size(deviceFile()) > 0;
        } catch (IOException e) {
            return false;
        }
    }

    private String log() {
        try {
            return Files.readString(work.resolve("nbdfuse.log"), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "(no log)";
        }
    }

    /** The FUSE file that holds the whole export. */
    public Path deviceFile() {
        return fuseDir.resolve("nbd");
    }

    /** The loop device over the FUSE file, attached on first use ({@code losetup -f --show}). */
    public String loopDevice() {
        if (loopDevice == null) {
            String dev = ExternalTool.run(T, "losetup", "-f", "--show", deviceFile().toString()).assertSuccess().stdout().trim();
            if (!dev.startsWith("/dev/loop")) {
                throw new AssertionError("losetup printed " + dev);
            }
            loopDevice = dev;
        }
        return loopDevice;
    }

    /** {@code mkfs.ext4 -q -F} on the loop device. */
    public void mkfsExt4() {
        ExternalTool.require("mkfs.ext4");
        ExternalTool.run(Duration.ofSeconds(120), "mkfs.ext4", "-q", "-F", loopDevice()).assertSuccess();
    }

    /** Mounts the loop device (filesystem type detected) and returns the mount point. */
    public Path mount() {
        ExternalTool.run(T, "mount", loopDevice(), mountDir.toString()).assertSuccess();
        mounted = true;
        return mountDir;
    }

    /** Unmounts the filesystem (the loop device stays attached). */
    public void unmount() {
        if (mounted) {
            ExternalTool.run(T, "umount", mountDir.toString()).assertSuccess();
            mounted = false;
        }
    }

    /** {@code fsfreeze -f} (true) or {@code -u} (false) on the mounted filesystem. */
    public void fsfreeze(boolean freeze) {
        ExternalTool.require("fsfreeze");
        ExternalTool.run(T, "fsfreeze", freeze ? "-f" : "-u", mountDir.toString()).assertSuccess();
    }

    /** Runs {@code sync} for the mounted filesystem. */
    public void sync() {
        ExternalTool.run(T, "sync", "-f", mountDir.resolve(".").toString()).assertSuccess();
    }

    /** Undoes everything that was done, in reverse order; see the class comment. */
    @Override
    public void close() throws IOException {
        List<Throwable> failures = new ArrayList<>();
        if (mounted) {
            step(failures, () -> {
                ExternalTool.run(T, "fsfreeze", "-u", mountDir.toString()); // in case a test left it frozen
                umount(mountDir);
            });
            mounted = false;
        }
        if (loopDevice != null) {
            String dev = loopDevice;
            step(failures, () -> ExternalTool.run(T, "losetup", "-d", dev).assertSuccess());
            loopDevice = null;
        }
        if (isMountPoint(fuseDir)) {
            step(failures, () -> umount(fuseDir));
        }
        if (nbdfuse != null) {
            Process p = nbdfuse;
            step(failures, () -> ExternalTool.killTree(p));
            nbdfuse = null;
        }
        if (!isMountPoint(fuseDir) && !isMountPoint(mountDir)) {
            step(failures, () -> deleteTree(work));
        }
        if (!failures.isEmpty()) {
            IOException e = new IOException("tearing down " + work + " failed: " + failures.get(0));
            failures.forEach(e::addSuppressed);
            throw e;
        }
    }

    private static void step(List<Throwable> failures, Runnable r) {
        try {
            r.run();
        } catch (RuntimeException | AssertionError e) {
            failures.add(e);
        }
    }

    /** umount, retried (a busy mount may become free), then lazily detached. */
    private static void umount(Path dir) {
        for (int i = 0; i < 5; i++) {
            if (ExternalTool.run(T, "umount", dir.toString()).exitCode() == 0 || !isMountPoint(dir)) {
                return;
            }
            try {
                Thread.sleep(200); // a retry's back-off: nothing announces when a busy mount becomes free
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        ExternalTool.run(T, "umount", "-l", dir.toString()).assertSuccess();
    }

    private static List<String> mountPoints() {
        try {
            return Files.readAllLines(Path.of("/proc/mounts")).stream().map(l -> l.split(" ")).filter(f -> f.length > 1)
                    .map(f -> f[1].replace("\\040", " ")).toList();
        } catch (IOException e) {
            return List.of();
        }
    }

    private static boolean isMountPoint(Path dir) {
        return mountPoints().contains(dir.toAbsolutePath().toString());
    }

    /**
     * Removes leftovers of crashed runs: for every work directory under the temp dir whose owner
     * process is gone, unmounts its filesystem, detaches loop devices over its FUSE file,
     * unmounts the FUSE dir and deletes it. Safe to call at any time.
     */
    public static void cleanupLeftovers() {
        Path tmp = Path.of(System.getProperty("java.io.tmpdir"));
        List<Path> stale = new ArrayList<>();
        try (Stream<Path> s = Files.list(tmp)) {
            s.filter(p -> p.getFileName().toString().startsWith(PREFIX)).filter(NbdFuseMount::ownerGone).forEach(stale::add);
        } catch (IOException e) {
            return;
        }
        for (Path work : stale) {
            Path mnt = work.resolve("mnt");
            Path fuse = work.resolve("fuse");
            if (isMountPoint(mnt)) {
                ExternalTool.run(T, "umount", "-l", mnt.toString());
            }
            String loops = ExternalTool.run(T, "losetup", "-n", "-l", "-O", "NAME,BACK-FILE").stdout();
            for (String line : loops.split("\n")) {
                String[] f = line.trim().split("\\s+", 2);
                if (f.length == 2 && f[1].startsWith(fuse.toString())) {
                    ExternalTool.run(T, "losetup", "-d", f[0]);
                }
            }
            if (isMountPoint(fuse)) {
                ExternalTool.run(T, "umount", "-l", fuse.toString());
            }
            try {
                String pid = Files.readString(work.resolve("nbdfuse.pid")).trim();
                ProcessHandle.of(Long.parseLong(pid)).ifPresent(ProcessHandle::destroyForcibly);
            } catch (IOException | NumberFormatException e) {
                // no pid file: nothing to kill
            }
            if (!isMountPoint(fuse) && !isMountPoint(mnt)) {
                try {
                    deleteTree(work);
                } catch (UncheckedIOException e) {
                    // best effort
                }
            }
        }
    }

    private static boolean ownerGone(Path work) {
        try {
            long pid = Long.parseLong(Files.readString(work.resolve(OWNER_FILE)).trim());
            return ProcessHandle.of(pid).map(h -> !h.isAlive()).orElse(true);
        } catch (IOException | NumberFormatException e) {
            return true;
        }
    }

    private static void deleteTree(Path root) {
        try {
            FileTrees.deleteRecursively(root);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public String toString() {
        return "NbdFuseMount[" + work + (loopDevice != null ? ", " + loopDevice : "") + "]";
    }
}
