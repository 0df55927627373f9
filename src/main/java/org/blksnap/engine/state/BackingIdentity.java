package org.blksnap.engine.state;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.blksnap.engine.BlockDevice;

/**
 * What identifies the state of a device's backing store, recorded at a clean stop and compared at
 * the next start: a difference means someone changed it while the daemon was not serving it.
 *
 * <ul>
 *   <li>a regular file: size, {@code st_dev}, {@code st_ino}, modification and change times in ns;
 *   <li>a block device: size and {@code st_rdev} only; writes to a block device while the daemon was
 *       down change neither, so they cannot be detected (docs/persistence.md);
 *   <li>a device without a path (in-memory devices of tests): size only.
 * </ul>
 *
 * @param kind      which of the three
 * @param sizeBytes device size in bytes
 * @param dev       {@code st_dev} of the file (0 unless FILE)
 * @param ino       {@code st_ino} of the file (0 unless FILE)
 * @param rdev      {@code st_rdev} of the device node (0 unless BLOCK)
 * @param mtimeNs   modification time, ns since the epoch (0 unless FILE)
 * @param ctimeNs   status change time, ns since the epoch (0 unless FILE)
 */
record BackingIdentity(Kind kind, long sizeBytes, long dev, long ino, long rdev, long mtimeNs, long ctimeNs) {
    /** What kind of backing store; the ordinal is stored on disk (CheckpointDescriptor). */
    enum Kind { SIZE_ONLY, FILE, BLOCK }

    private static final int S_IFMT = 0170000;
    private static final int S_IFBLK = 0060000;
    private static final int S_IFREG = 0100000;

    /**
     * The identity of {@code backing} now. A backing device named by an absolute path that exists is
     * a file or a block device; anything else is identified by its size only.
     *
     * @throws IOException if the attributes of an existing path cannot be read
     */
    static BackingIdentity of(BlockDevice backing) throws IOException {
        return of(backing.name(), backing.sizeBytes());
    }

    /** As {@link #of(BlockDevice)}, for a device named {@code name} of {@code sizeBytes}. */
    static BackingIdentity of(String name, long sizeBytes) throws IOException {
        if (name == null || !name.startsWith("/")) {
            return sizeOnly(sizeBytes);
        }
        Path path = Path.of(name);
        if (!Files.exists(path)) {
            return sizeOnly(sizeBytes);
        }
        Map<String, Object> a = Files.readAttributes(path, "unix:*");
        int mode = (Integer) a.get("mode");
        if ((mode & S_IFMT) == S_IFBLK) {
            return new BackingIdentity(Kind.BLOCK, sizeBytes, 0, 0, (Long) a.get("rdev"), 0, 0);
        }
        if ((mode & S_IFMT) == S_IFREG) {
            return new BackingIdentity(Kind.FILE, sizeBytes, (Long) a.get("dev"), (Long) a.get("ino"), 0,
                    nanos((FileTime) a.get("lastModifiedTime")), nanos((FileTime) a.get("ctime")));
        }
        return sizeOnly(sizeBytes);
    }

    static BackingIdentity sizeOnly(long sizeBytes) {
        return new BackingIdentity(Kind.SIZE_ONLY, sizeBytes, 0, 0, 0, 0, 0);
    }

    private static long nanos(FileTime t) {
        return t == null ? 0 : t.to(TimeUnit.NANOSECONDS);
    }

    /**
     * What differs between this (recorded at the stop) and {@code now}, naming each field with both
     * values, or null if nothing does.
     */
    String differenceTo(BackingIdentity now) {
        List<String> d = new ArrayList<>();
        if (kind != now.kind) {
            d.add("kind " + kind + " -> " + now.kind);
        }
        if (sizeBytes != now.sizeBytes) {
            d.add("size " + sizeBytes + " -> " + now.sizeBytes + " bytes");
        }
        if (dev != now.dev) {
            d.add("st_dev " + dev + " -> " + now.dev);
        }
        if (ino != now.ino) {
            d.add("st_ino " + ino + " -> " + now.ino);
        }
        if (rdev != now.rdev) {
            d.add("st_rdev " + rdev + " -> " + now.rdev);
        }
        if (mtimeNs != now.mtimeNs) {
            d.add("mtime " + mtimeNs + " -> " + now.mtimeNs + " ns");
        }
        if (ctimeNs != now.ctimeNs) {
            d.add("ctime " + ctimeNs + " -> " + now.ctimeNs + " ns");
        }
        return d.isEmpty() ? null : String.join(", ", d);
    }
}
