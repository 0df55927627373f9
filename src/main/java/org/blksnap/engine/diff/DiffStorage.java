package org.blksnap.engine.diff;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.channels.FileChannel;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Predicate;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.device.NativeIo;
import org.blksnap.engine.event.EventQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The difference storage of one snapshot, shared by all its devices: an ordered list of sector
 * ranges of files or block devices, handed out first-fit, strictly sequentially, one region per
 * chunk for the life of the snapshot.
 *
 * <p>Counters are in sectors: {@code capacity} (appended), {@code filled} (handed out, plus tails too
 * short for a region), {@code requested} (what the low-space events asked for in total). When free
 * space ({@code capacity - filled}) falls to half of diff_storage_minimum, one low_free_space event
 * asks for diff_storage_minimum more sectors; no further one comes until an append brings the
 * capacity up to what was requested. (v1 compared against the full minimum and could underflow;
 * neither is copied.) When nothing is left, the storage overflows: every later allocation fails
 * with ENOSPC at once.
 *
 * <p>Thread-safe; allocation and append are serialised by one lock.
 */
public final class DiffStorage implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(DiffStorage.class);
    private static final int SECTOR_BYTES = SectorRange.SECTOR_BYTES;

    private final String owner;
    private final EventQueue events;
    private final long minimumSectors;
    private final NativeIo nativeIo;
    private final StorageLedger ledger;
    private final ReentrantLock lock = new ReentrantLock();
    private final ArrayDeque<Block> empty = new ArrayDeque<>();
    private final List<StorageFile> files = new ArrayList<>();
    private final List<Appended> appended = new ArrayList<>();
    private long capacitySectors;
    private long filledSectors;
    private long requestedSectors;
    private boolean lowSpace;
    private boolean overflow;
    private boolean closed;

    private record Appended(Object fileKey, long sectorOffset, long sectorEnd) {
    }

    private static final class Block {
        final StorageFile file;
        final long sectorOffset;
        final long sectorCount;
        long usedSectors;

        Block(StorageFile file, long sectorOffset, long sectorCount) {
            this.file = file;
            this.sectorOffset = sectorOffset;
            this.sectorCount = sectorCount;
        }

        long freeSectors() {
            return sectorCount - usedSectors;
        }
    }

    /**
     * A new, empty storage; immediately queues the first low_free_space event asking for
     * {@code minimumSectors}, as the module does at SNAPSHOT_CREATE.
     *
     * @param owner          the snapshot, for messages
     * @param minimumSectors diff_storage_minimum at creation, in sectors
     */
    public DiffStorage(String owner, EventQueue events, long minimumSectors, NativeIo nativeIo) {
        this(owner, events, minimumSectors, nativeIo, StorageLedger.NONE);
    }

    /** As above; the files of this storage are noted in {@code ledger} (see {@link StorageLedger}). */
    public DiffStorage(String owner, EventQueue events, long minimumSectors, NativeIo nativeIo, StorageLedger ledger) {
        this.ledger = ledger;
        this.owner = owner;
        this.events = events;
        this.minimumSectors = minimumSectors;
        this.nativeIo = nativeIo;
        this.requestedSectors = minimumSectors;
        this.lowSpace = true;
        events.post(new SnapshotEvent.LowFreeSpace(System.nanoTime(), minimumSectors));
    }

    /**
     * Appends storage. Validates everything first; a rejected append changes nothing (a file created
     * for it is deleted again).
     *
     * @param isBackingStore tells whether a path is the backing store of a served device; such a path
     *                       is refused unless explicit ranges are given
     * @throws BlksnapException ENOENT missing path without a size; EINVAL bad size, ranges outside the
     *                          file, overlapping each other or storage already appended, an empty
     *                          file, a device's backing store without ranges; EIO if it cannot be
     *                          opened or created; ESRCH if the storage was released
     */
    public void append(StorageSpec spec, Predicate<Path> isBackingStore) {
        Path path = spec.path().toAbsolutePath().normalize();
        boolean created = false;
        StorageFile file = null;
        try {
            // Checked whether or not the file exists, so one request is judged the same either way.
            if (spec.createSizeBytes() % SECTOR_BYTES != 0) {
                throw new BlksnapException(Errno.EINVAL, "size of storage " + path + " (" + spec.createSizeBytes()
                        + " bytes) must be a multiple of " + SECTOR_BYTES);
            }
            if (!Files.exists(path)) {
                if (spec.createSizeBytes() <= 0) {
                    throw new BlksnapException(Errno.ENOENT, "storage " + path + " does not exist (give a size to create it)");
                }
                ledger.creating(owner, path);
                createEmpty(path);
                created = true; // from here on, a failure removes the file again (see the catch)
                sizeAndReserve(path, spec.createSizeBytes(), spec.preallocate());
            }
            file = open(path, nativeIo);
            if (!created) {
                ledger.given(owner, path);
            }
            long fileSectors = file.sizeBytes() / SECTOR_BYTES;
            List<SectorRange> ranges = spec.ranges();
            if (ranges.isEmpty()) {
                if (isBackingStore.test(path)) {
                    throw new BlksnapException(Errno.EINVAL, "storage " + path + " is the backing store of a served device;"
                            + " give explicit sector ranges to use parts of it");
                }
                if (fileSectors == 0) {
                    throw new BlksnapException(Errno.EINVAL, "storage " + path + " is empty");
                }
                ranges = List.of(new SectorRange(0, fileSectors));
            }
            List<SectorRange> sorted = new ArrayList<>(ranges);
            sorted.sort(Comparator.comparingLong(SectorRange::sectorOffset));
            for (int i = 0; i < sorted.size(); i++) {
                SectorRange r = sorted.get(i);
                if (r.sectorEnd() > fileSectors) {
                    throw new BlksnapException(Errno.EINVAL, "storage range " + r + " is outside " + path + " of "
                            + fileSectors + " sectors");
                }
                if (i > 0 && sorted.get(i - 1).sectorEnd() > r.sectorOffset()) {
                    throw new BlksnapException(Errno.EINVAL, "storage ranges " + sorted.get(i - 1) + " and " + r
                            + " of " + path + " overlap");
                }
            }
            lock.lock();
            try {
                if (closed) {
                    throw new BlksnapException(Errno.ESRCH, "snapshot " + owner + " was destroyed");
                }
                for (SectorRange r : sorted) {
                    for (Appended a : appended) {
                        if (a.fileKey().equals(file.fileKey()) && a.sectorOffset() < r.sectorEnd()
                                && r.sectorOffset() < a.sectorEnd()) {
                            throw new BlksnapException(Errno.EINVAL, "storage range " + r + " of " + path
                                    + " overlaps storage already appended (" + a.sectorOffset() + ":"
                                    + (a.sectorEnd() - a.sectorOffset()) + ")");
                        }
                    }
                }
                files.add(file);
                for (SectorRange r : ranges) {
                    empty.addLast(new Block(file, r.sectorOffset(), r.sectorCount()));
                    appended.add(new Appended(file.fileKey(), r.sectorOffset(), r.sectorEnd()));
                    capacitySectors += r.sectorCount();
                }
                if (lowSpace && capacitySectors >= requestedSectors) {
                    lowSpace = false;
                }
                checkLowSpace();
            } finally {
                lock.unlock();
            }
            LOG.info("snapshot {}: appended storage {} ({} ranges); capacity {} sectors", owner, path, ranges.size(),
                    capacitySectors);
        } catch (IOException | RuntimeException e) {
            if (file != null) {
                closeQuietly(file);
            }
            if (created) {
                try {
                    Files.deleteIfExists(path);
                } catch (IOException d) {
                    e.addSuppressed(d);
                }
            }
            if (e instanceof BlksnapException be) {
                throw be;
            }
            if (e instanceof NoSuchFileException) {
                throw new BlksnapException(Errno.ENOENT, "storage " + path + " does not exist", e);
            }
            throw new BlksnapException(noSpace(e) ? Errno.ENOSPC : Errno.EIO,
                    "cannot use storage " + path + ": " + e.getMessage(), e);
        }
    }

    /**
     * Whether an I/O failure says the filesystem is full (no blocks or no inodes left), which the
     * caller can act on (a smaller file, another directory) unlike other I/O errors.
     */
    static boolean noSpace(Exception e) {
        return e instanceof FileSystemException fse && fse.getReason() != null
                && fse.getReason().contains("No space left on device");
    }

    private static void createEmpty(Path path) throws IOException {
        Path parent = path.getParent();
        if (parent != null && !Files.isDirectory(parent)) {
            throw new BlksnapException(Errno.ENOENT, "directory " + parent + " of storage " + path + " does not exist");
        }
        Files.createFile(path);
    }

    /** Gives a file this process just created its size and, if asked and possible, reserves its blocks. */
    private void sizeAndReserve(Path path, long sizeBytes, boolean preallocate) throws IOException {
        try (RandomAccessFile raf = new RandomAccessFile(path.toFile(), "rw")) {
            raf.setLength(sizeBytes);
        }
        if (preallocate && nativeIo.available()) {
            int h = nativeIo.open(path, true);
            try {
                nativeIo.preallocate(h, 0, sizeBytes);
            } catch (IOException e) {
                throw new BlksnapException(Errno.ENOSPC, "cannot preallocate " + sizeBytes + " bytes for storage " + path
                        + ": " + e.getMessage(), e);
            } finally {
                nativeIo.close(h);
            }
        }
    }

    private static StorageFile open(Path path, NativeIo nativeIo) throws IOException {
        boolean blockDevice = BlockDevices.isBlockDevice(path);
        if (!blockDevice && !Files.isRegularFile(path)) {
            throw new BlksnapException(Errno.EINVAL, "storage " + path + " is neither a regular file nor a block device");
        }
        Object key = Files.readAttributes(path, BasicFileAttributes.class).fileKey();
        FileChannel ch = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
        try {
            long size;
            if (blockDevice) {
                try (var dev = BlockDevices.open(path, 0, false)) {
                    size = dev.sizeBytes();
                }
            } else {
                size = ch.size();
            }
            // a handle for in-kernel copy-on-write (KernelCopy): regular files only, as copy_file_range takes
            int handle = -1;
            if (!blockDevice && nativeIo == NativeIo.system() && nativeIo.available()) {
                try {
                    handle = nativeIo.open(path, true);
                } catch (IOException e) {
                    handle = -1;
                }
            }
            return new StorageFile(path, key == null ? path : key, ch, size, nativeIo, handle);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    /**
     * Hands out a region of {@code sectors} for one chunk.
     *
     * @throws BlksnapException ENOSPC when the storage is exhausted (it then stays overflowed), ESRCH
     *                          after {@link #close()}
     */
    Region allocate(long sectors) {
        lock.lock();
        try {
            if (closed) {
                throw new BlksnapException(Errno.ESRCH, "snapshot " + owner + " was destroyed");
            }
            if (overflow) {
                throw new BlksnapException(Errno.ENOSPC, "difference storage of snapshot " + owner + " overflowed");
            }
            while (!empty.isEmpty()) {
                Block b = empty.peekFirst();
                if (b.freeSectors() >= sectors) {
                    long start = b.sectorOffset + b.usedSectors;
                    b.usedSectors += sectors;
                    filledSectors += sectors;
                    if (b.freeSectors() == 0) {
                        empty.pollFirst();
                    }
                    checkLowSpace();
                    return new Region(b.file, start * SECTOR_BYTES, sectors * SECTOR_BYTES);
                }
                filledSectors += b.freeSectors();
                empty.pollFirst();
            }
            overflow = true;
            LOG.warn("snapshot {}: difference storage overflowed ({} sectors appended)", owner, capacitySectors);
            throw new BlksnapException(Errno.ENOSPC, "difference storage of snapshot " + owner + " is full ("
                    + capacitySectors + " sectors appended)");
        } finally {
            lock.unlock();
        }
    }

    /** Under the lock: raises low_free_space once when free space falls to half the minimum. */
    private void checkLowSpace() {
        if (lowSpace) {
            return;
        }
        long free = capacitySectors - filledSectors;
        if (free <= minimumSectors / 2) {
            lowSpace = true;
            requestedSectors = capacitySectors + minimumSectors;
            events.post(new SnapshotEvent.LowFreeSpace(System.nanoTime(), minimumSectors));
            LOG.info("snapshot {}: low free space ({} of {} sectors free); asking for {} more sectors", owner, free,
                    capacitySectors, minimumSectors);
        }
    }

    /** Flushes every storage file. */
    public void force() throws IOException {
        List<StorageFile> snapshot;
        lock.lock();
        try {
            snapshot = List.copyOf(files);
        } finally {
            lock.unlock();
        }
        for (StorageFile f : snapshot) {
            f.force();
        }
    }

    public long capacitySectors() {
        lock.lock();
        try {
            return capacitySectors;
        } finally {
            lock.unlock();
        }
    }

    public long filledSectors() {
        lock.lock();
        try {
            return filledSectors;
        } finally {
            lock.unlock();
        }
    }

    public long requestedSectors() {
        lock.lock();
        try {
            return requestedSectors;
        } finally {
            lock.unlock();
        }
    }

    public boolean isOverflowed() {
        lock.lock();
        try {
            return overflow;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Whether {@code path} is one of the files appended here, the same file by its file key (another
     * path or a hard link to it counts). False once closed, or when the path cannot be read.
     * Thread-safe.
     */
    public boolean holdsFile(Path path) {
        Object key;
        try {
            key = Files.readAttributes(path, BasicFileAttributes.class).fileKey();
        } catch (IOException | RuntimeException e) {
            return false;
        }
        if (key == null) {
            return false;
        }
        lock.lock();
        try {
            return !closed && appended.stream().anyMatch(a -> key.equals(a.fileKey()));
        } finally {
            lock.unlock();
        }
    }

    /** Closes every storage file; later allocations and appends fail. Never deletes or changes data. */
    @Override
    public void close() {
        List<StorageFile> toClose;
        lock.lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            toClose = List.copyOf(files);
            files.clear();
            empty.clear();
        } finally {
            lock.unlock();
        }
        for (StorageFile f : toClose) {
            closeQuietly(f);
        }
        ledger.released(owner);
    }

    private static void closeQuietly(StorageFile f) {
        try {
            f.close();
        } catch (IOException e) {
            LOG.warn("closing storage {} failed: {}", f.path(), e.toString());
        }
    }
}
