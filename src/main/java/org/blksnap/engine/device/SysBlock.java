package org.blksnap.engine.device;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Geometry of a Linux block device, read from /sys/class/block. */
record SysBlock(long sizeBytes, int logicalBlockSize, int minimumIoBytes) {

    static SysBlock of(Path node) throws IOException {
        Path real = node.toRealPath();
        String name = real.getFileName().toString();
        Path sys = Path.of("/sys/class/block", name);
        if (!Files.isDirectory(sys)) {
            throw new IOException("no sysfs entry " + sys + " for block device " + node);
        }
        long sectors = Long.parseLong(Files.readString(sys.resolve("size")).trim());
        Path queue = sys.resolve("queue");
        if (!Files.isDirectory(queue)) {
            queue = sys.toRealPath().getParent().resolve("queue");
        }
        int logical = readInt(queue.resolve("logical_block_size"), 512);
        int ioMin = readInt(queue.resolve("minimum_io_size"), logical);
        return new SysBlock(sectors * 512, logical, ioMin);
    }

    private static int readInt(Path p, int fallback) {
        try {
            return Integer.parseInt(Files.readString(p).trim());
        } catch (IOException | NumberFormatException e) {
            return fallback;
        }
    }
}
