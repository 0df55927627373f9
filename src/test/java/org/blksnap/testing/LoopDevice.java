package org.blksnap.testing;

import java.nio.file.Path;
import java.time.Duration;

/**
 * A Linux loop device over a file, for tests that need a real block device (root and losetup; a
 * skip on a developer machine without them, a failure in CI, see {@link ExternalTool#require}).
 * {@link #close()} detaches it, so a failed test leaves none behind.
 */
public final class LoopDevice implements AutoCloseable {
    private static final Duration T = Duration.ofSeconds(60);
    private final Path path;
    private boolean attached = true;

    private LoopDevice(Path path) {
        this.path = path;
    }

    /** {@code losetup -f --show [--sector-size N] FILE}; {@code sectorSize} 0 keeps the default (512). */
    public static LoopDevice attach(Path file, int sectorSize) {
        ExternalTool.require("root", "losetup");
        ExternalTool.Result r = sectorSize == 0
                ? ExternalTool.run(T, "losetup", "-f", "--show", file.toString())
                : ExternalTool.run(T, "losetup", "-f", "--show", "--sector-size", Integer.toString(sectorSize), file.toString());
        r.assertSuccess();
        return new LoopDevice(Path.of(r.stdout().trim()));
    }

    /** The device node, e.g. {@code /dev/loop3}. */
    public Path path() {
        return path;
    }

    @Override
    public void close() {
        if (attached) {
            attached = false;
            ExternalTool.run(T, "losetup", "-d", path.toString()).assertSuccess();
        }
    }

    @Override
    public String toString() {
        return path.toString();
    }
}
