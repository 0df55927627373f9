package org.blksnap.daemon;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ImageInfo;
import org.blksnap.engine.Status;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.util.DirectBuffers;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Refuses difference storage on a filesystem that this daemon itself serves (ext4 on nbdfuse +
 * loop, or on /dev/nbdN, over one of our devices or images), as upstream v6 refuses storage on a
 * snapshotted device: every copy-on-write write to such storage would come back as an NBD write to
 * our own device, through its tracker, and copy-on-write again while the first one waits for it,
 * possibly on the very chunk it holds locked: a deadlock.
 *
 * <p>How it is found, whatever the layers between (loop, partition, nbdfuse, the kernel NBD client):
 * a probe file of one 4 KiB block of random bytes is written into the storage's directory and
 * forced (so it has reached the filesystem's block device, through any NBD client, before this
 * returns); FIEMAP says where its block lies on that block device; that place (also shifted by a
 * partition's start or a loop device's offset, from sysfs) is read on every device and image the
 * engine serves. If one holds the probe's bytes, the storage is ours. The probe file is deleted.
 * A filesystem without a block device (tmpfs, FUSE, NFS) or without FIEMAP is not probed: it cannot
 * be one of our exports unless through a FUSE filesystem over one (fuse2fs), which is not detected.
 *
 * <p>Why refuse rather than translate the file into ranges of the export (as the v1 tool does with
 * FIEMAP): ranges of a file that nothing pins are overwritten data once the file is moved, deleted
 * or defragmented (upstream issue #53), and the filesystem on the export would see its own blocks
 * change under it; upstream left that model in v6 for the same reasons.
 *
 * <p>Thread-safe (no state). Must be called without any engine lock held: the probe's writes go
 * through our own devices.
 */
final class SelfHostedStorage {
    private static final Logger LOG = LoggerFactory.getLogger(SelfHostedStorage.class);
    static final int PROBE_BYTES = 4096;
    private static final SecureRandom RANDOM = new SecureRandom();

    private SelfHostedStorage() {
    }

    /**
     * @param storage the storage file a caller named (it may not exist yet)
     * @throws BlksnapException EINVAL the storage lies on a filesystem served from one of our devices
     *                          or images
     */
    static void check(Blksnap engine, Path storage) {
        Path dir = storage.toAbsolutePath().getParent();
        if (dir == null || !Files.isDirectory(dir)) {
            return; // the engine says what is wrong with it
        }
        long dev;
        try {
            dev = ((Number) Files.getAttribute(dir, "unix:dev")).longValue();
        } catch (IOException | UnsupportedOperationException e) {
            return;
        }
        if (major(dev) == 0) {
            return; // no block device under it (tmpfs, FUSE, NFS, ...)
        }
        byte[] token = new byte[PROBE_BYTES];
        RANDOM.nextBytes(token);
        Path probe = dir.resolve(".blksnap-probe-" + HexFormat.of().formatHex(token, 0, 8));
        try {
            long physical;
            try {
                try (FileChannel ch = FileChannel.open(probe, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE,
                        LinkOption.NOFOLLOW_LINKS)) {
                    ByteBuffer b = ByteBuffer.wrap(token);
                    while (b.hasRemaining()) {
                        ch.write(b, b.position());
                    }
                    ch.force(true);
                }
                physical = BlockDevices.physicalOffset(probe, 0);
            } catch (IOException e) {
                LOG.debug("storage {}: no probe of its filesystem ({}); not checked for being ours", storage,
                        e.toString());
                return;
            }
            if (physical < 0) {
                return;
            }
            Set<Long> offsets = new LinkedHashSet<>();
            offsets.add(physical);
            long shifted = physical + sysfsBytes(dev, "start", 512) + sysfsBytes(dev, "loop/offset", 1);
            offsets.add(shifted);
            String found = findToken(engine, token, offsets);
            if (found != null) {
                LOG.warn("difference storage {} refused: its filesystem is served from {}", storage, found);
                throw new BlksnapException(Errno.EINVAL, "difference storage " + storage + " lies on a filesystem"
                        + " served by this daemon from " + found + ": its copy-on-write writes would come back"
                        + " through that export's own tracker and deadlock; put the storage on a filesystem that is"
                        + " not on one of this daemon's exports (for example /dev/shm or a local disk)");
            }
        } finally {
            try {
                Files.deleteIfExists(probe);
            } catch (IOException e) {
                LOG.warn("cannot delete the probe file {}: {}", probe, e.toString());
            }
        }
    }

    /** The device or image (and where) that holds {@code token} at one of {@code offsets}, or null. */
    private static String findToken(Blksnap engine, byte[] token, Set<Long> offsets) {
        List<String[]> exports = new ArrayList<>();
        for (String d : engine.deviceNames()) {
            exports.add(new String[] {"device", d});
        }
        for (Status.SnapshotStatus s : engine.status().snapshots()) {
            for (ImageInfo i : s.images()) {
                exports.add(new String[] {"image", i.image()});
            }
        }
        // Filesystem blocks may be smaller than 4 KiB (ext4 on a small device uses 1 KiB), so the probe
        // may start anywhere on a 512-byte boundary: read the aligned 8 KiB around it.
        ByteBuffer buf = DirectBuffers.allocateAligned(2 * PROBE_BYTES, PROBE_BYTES);
        for (String[] e : exports) {
            BlockDevice d;
            try {
                d = e[0].equals("device") ? engine.device(e[1]) : engine.image(e[1]);
            } catch (BlksnapException gone) {
                continue; // removed or destroyed meanwhile
            }
            for (long off : offsets) {
                long window = off / PROBE_BYTES * PROBE_BYTES;
                if (window + 2L * PROBE_BYTES > d.sizeBytes()) {
                    continue; // the last 4 KiB of a device: not probed (a filesystem keeps metadata there)
                }
                try {
                    buf.clear();
                    d.read(buf, window);
                    int at = (int) (off - window);
                    if (buf.slice(at, PROBE_BYTES).equals(ByteBuffer.wrap(token))) {
                        return e[0] + " " + e[1] + " (the probe was found at byte " + off + ")";
                    }
                } catch (IOException | BlksnapException ignored) {
                    // an image of a corrupted snapshot, a device going away: not the one
                }
            }
        }
        return null;
    }

    /** A number from {@code /sys/dev/block/MAJ:MIN/NAME} times {@code unit}, or 0 if there is none. */
    private static long sysfsBytes(long dev, String name, long unit) {
        Path p = Path.of("/sys/dev/block/" + major(dev) + ":" + minor(dev) + "/" + name);
        try {
            return Long.parseLong(Files.readString(p).trim()) * unit;
        } catch (NoSuchFileException e) {
            return 0;
        } catch (IOException | NumberFormatException e) {
            LOG.debug("cannot read {}: {}", p, e.toString());
            return 0;
        }
    }

    /** Linux {@code major(dev_t)}. */
    static long major(long dev) {
        return ((dev >>> 8) & 0xfff) | ((dev >>> 32) & ~0xfffL);
    }

    /** Linux {@code minor(dev_t)}. */
    static long minor(long dev) {
        return (dev & 0xff) | ((dev >>> 12) & ~0xffL);
    }
}
