package org.blksnap.e2e;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.blksnap.testing.ExternalTool;

/**
 * An NBD export as a kernel ext4 filesystem: nbdfuse exposes it as a file, a loop device sits on the
 * file, and ext4 is mounted from the loop device (nbd.md §6). {@link #close()} undoes every step that
 * was done, in reverse order, even after a failure half-way.
 */
final class FuseLoopMount implements AutoCloseable {
    private static final Duration T = Duration.ofSeconds(60);
    private final Path fuseDir;
    private final Process nbdfuse;
    private String loop;
    private Path mountPoint;

    private FuseLoopMount(Path fuseDir, Process nbdfuse) {
        this.fuseDir = fuseDir;
        this.nbdfuse = nbdfuse;
    }

    static void require() {
        ExternalTool.require("nbdfuse", "losetup", "mkfs.ext4", "mount", "umount", "fsfreeze");
        if (!ExternalTool.isRoot()) {
            String msg = "mounting needs root";
            if (ExternalTool.inCi()) {
                throw new AssertionError(msg);
            }
            org.junit.jupiter.api.Assumptions.abort(msg);
        }
    }

    /** Attaches the export (nbdfuse + loop device). */
    static FuseLoopMount attach(String uri, Path work) throws Exception {
        Path fuseDir = Files.createDirectories(work.resolve("fuse"));
        Process p = ExternalTool.start(Map.of(), work, List.of("nbdfuse", fuseDir.toString(), uri),
                work.resolve("nbdfuse.log"));
        FuseLoopMount m = new FuseLoopMount(fuseDir, p);
        try {
            long end = System.nanoTime() + Duration.ofSeconds(20).toNanos();
            while (!Files.exists(fuseDir.resolve("nbd"))) {
                if (!p.isAlive() || System.nanoTime() > end) {
                    throw new IOException("nbdfuse did not expose " + uri + ": "
                            + Files.readString(work.resolve("nbdfuse.log")));
                }
                Thread.sleep(50);
            }
            m.loop = ExternalTool.run(T, "losetup", "-f", "--show", fuseDir.resolve("nbd").toString())
                    .assertSuccess().stdout().trim();
            return m;
        } catch (Exception e) {
            m.close();
            throw e;
        }
    }

    void mkfs() {
        ExternalTool.run(T, "mkfs.ext4", "-q", "-F", loop).assertSuccess();
    }

    void mount(Path mp) throws IOException {
        Files.createDirectories(mp);
        ExternalTool.run(T, "mount", loop, mp.toString()).assertSuccess();
        mountPoint = mp;
    }

    void umount() {
        if (mountPoint != null) {
            ExternalTool.run(T, "umount", mountPoint.toString()).assertSuccess();
            mountPoint = null;
        }
    }

    @Override
    public void close() {
        List<String> problems = new ArrayList<>();
        if (mountPoint != null) {
            ExternalTool.Result r = ExternalTool.run(T, "umount", mountPoint.toString());
            if (r.exitCode() != 0) {
                ExternalTool.run(T, "umount", "-l", mountPoint.toString());
                problems.add(r.describe());
            }
            mountPoint = null;
        }
        if (loop != null) {
            ExternalTool.Result r = ExternalTool.run(T, "losetup", "-d", loop);
            if (r.exitCode() != 0) {
                problems.add(r.describe());
            }
            loop = null;
        }
        ExternalTool.Result r = ExternalTool.run(T, "umount", fuseDir.toString());
        if (r.exitCode() != 0 && nbdfuse.isAlive()) {
            ExternalTool.run(T, "umount", "-l", fuseDir.toString());
        }
        ExternalTool.killTree(nbdfuse);
        if (!problems.isEmpty()) {
            System.err.println("cleanup problems: " + problems);
        }
    }
}
