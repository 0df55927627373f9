package org.blksnap.engine.tracker;

import java.util.Arrays;
import java.util.UUID;
import java.util.concurrent.locks.ReentrantLock;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.CbtInfo;
import org.blksnap.engine.Errno;
import org.blksnap.engine.GenerationReason;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.SectorRange;

/**
 * The change block tracking map of one device: one byte per tracking block in each of two maps.
 *
 * <p>The write map records, for every block, the number of the snapshot generation in which it was
 * last written ({@code max(value, active)}); the read map is the write map as it was at the last
 * take, frozen until the next one. A block whose read-map value is above S has changed since
 * snapshot S of the same generation.
 *
 * <p>Thread-safety: {@link #mark} is called by many writers at once, always inside the device's
 * barrier (shared side); writers all store the same active number, so racing stores are benign.
 * {@link #switchAtTake} and {@link #resetIfNeeded} run with the barrier closed (no writer inside).
 * {@link #markBoth}, {@link #readMap} and {@link #info} hold the map's lock, so they see a
 * consistent generation. A {@code ReentrantLock}, not a monitor: {@link #markBoth} runs on the
 * image-write path, and I/O-path locks are j.u.c locks (docs/engine.md, "Threads").
 */
public final class CbtMap {
    /** Largest tracking block: 2^26 bytes (64 MiB), as fixed upstream in v3. */
    public static final int MAX_BLOCK_SHIFT = 26;
    private static final int SECTOR_SHIFT = 9;
    private static final int NUMBER_LIMIT = 256;

    private final String device;
    private final long capacityBytes;
    private final int blockShift;
    private final int blockCount;
    private final byte[] writeMap;
    private final byte[] readMap;
    private volatile UUID generationId;
    private volatile int previous;
    private volatile int active;
    private volatile boolean corrupted;
    private volatile GenerationReason reason;
    private volatile String reasonDetail;
    /** Guards the maps against each other's multi-block updates and the switch (never held by {@link #mark}). */
    private final ReentrantLock lock = new ReentrantLock();

    private CbtMap(String device, long capacityBytes, int blockShift, GenerationReason reason, String detail) {
        this.device = device;
        this.capacityBytes = capacityBytes;
        this.blockShift = blockShift;
        long count = blockCount(capacityBytes, blockShift);
        if (count > Integer.MAX_VALUE - 8) {
            throw new BlksnapException(Errno.ENOMEM, device + ": CBT map of " + count + " blocks is too large");
        }
        this.blockCount = (int) count;
        this.writeMap = new byte[blockCount];
        this.readMap = new byte[blockCount];
        this.generationId = UUID.randomUUID();
        this.previous = 0;
        this.active = 1;
        this.reason = reason;
        // Never blank: the detail travels on the control API, whose strings are never empty.
        this.reasonDetail = detail == null || detail.isBlank()
                ? (reason == GenerationReason.NEW_TRACKER ? "tracker attached" : reason.name()) : detail;
    }

    /** A new map for a device of {@code capacityBytes}, with the block size rule applied to {@code params}. */
    public static CbtMap create(String device, long capacityBytes, ParamValues params) {
        return create(device, capacityBytes, params, GenerationReason.NEW_TRACKER, "tracker attached");
    }

    /** A new map (a new generation) that started for {@code reason}; {@code detail} says what happened. */
    public static CbtMap create(String device, long capacityBytes, ParamValues params, GenerationReason reason,
                                String detail) {
        return new CbtMap(device, capacityBytes, blockShift(capacityBytes, params), reason, detail);
    }

    /**
     * A map as it was saved: same generation, numbers, block shift (even if the parameters changed
     * since) and contents.
     *
     * @throws IllegalArgumentException if the maps' length is not the block count of the capacity at
     *                                  that shift, or a number is out of range
     */
    public static CbtMap restore(Saved saved) {
        CbtMap m = new CbtMap(saved.device(), saved.capacityBytes(), saved.blockShift(), saved.reason(), saved.detail());
        if (saved.writeMap().length != m.blockCount || saved.readMap().length != m.blockCount) {
            throw new IllegalArgumentException("maps of " + saved.writeMap().length + " and " + saved.readMap().length
                    + " blocks for a capacity of " + m.blockCount + " blocks");
        }
        if (saved.previous() < 0 || saved.active() != saved.previous() + 1 || saved.active() >= NUMBER_LIMIT) {
            throw new IllegalArgumentException("numbers previous=" + saved.previous() + " active=" + saved.active()
                    + " must be n and n+1 below " + NUMBER_LIMIT);
        }
        System.arraycopy(saved.writeMap(), 0, m.writeMap, 0, m.blockCount);
        System.arraycopy(saved.readMap(), 0, m.readMap, 0, m.blockCount);
        m.generationId = saved.generationId();
        m.previous = saved.previous();
        m.active = saved.active();
        return m;
    }

    /**
     * Everything a checkpoint keeps of a map: a copy, owned by the holder, who must not change it
     * ({@link #saveSwitched()} gives the same array as both maps).
     *
     * @param blockShift log2 of the tracking block size in bytes
     * @param previous   the number of the last taken snapshot
     * @param active     the number writes are marked with ({@code previous + 1})
     */
    public record Saved(String device, UUID generationId, int previous, int active, int blockShift, long capacityBytes,
                        GenerationReason reason, String detail, byte[] writeMap, byte[] readMap) {
    }

    /**
     * A copy of the whole state. Consistent with the writers only while the device's barrier is
     * closed (writers mark without the lock); consistent with {@link #markBoth} and the switch always.
     */
    public Saved save() {
        lock.lock();
        try {
            return new Saved(device, generationId, previous, active, blockShift, capacityBytes, reason, reasonDetail,
                    writeMap.clone(), readMap.clone());
        } finally {
            lock.unlock();
        }
    }

    /**
     * {@link #save()} for a take, right after {@link #switchAtTake()} with the device's barrier still
     * closed: the switch made the read map a copy of the write map, and until the barrier opens
     * nothing can change either (writers wait at the barrier; mark-dirty and take are serialized by the
     * engine; a device in a snapshot being taken has no image yet). So one copy serves as both maps:
     * half the copying while writes wait. The two arrays of the result are the same array.
     */
    public Saved saveSwitched() {
        lock.lock();
        try {
            byte[] copy = writeMap.clone();
            return new Saved(device, generationId, previous, active, blockShift, capacityBytes, reason, reasonDetail,
                    copy, copy);
        } finally {
            lock.unlock();
        }
    }

    /**
     * After a crash: raises every tracking block that overlaps {@code [offsetBytes, offsetBytes +
     * lengthBytes)} to the active number in the write map, so whatever may have been written there
     * since the checkpoint shows as changed. Parts past the map are ignored. Call before the device
     * serves writes.
     */
    public void raise(long offsetBytes, long lengthBytes) {
        if (lengthBytes <= 0 || offsetBytes < 0) {
            return;
        }
        lock.lock();
        try {
            long first = blockIndex(offsetBytes);
            long last = Math.min(blockIndex(offsetBytes + lengthBytes - 1), blockCount - 1L);
            int a = active;
            for (long i = first; i <= last; i++) {
                if (Byte.toUnsignedInt(writeMap[(int) i]) < a) {
                    writeMap[(int) i] = (byte) a;
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /** Why this generation started. */
    public GenerationReason reason() {
        return reason;
    }

    /** What exactly happened when this generation started. */
    public String reasonDetail() {
        return reasonDetail;
    }

    /**
     * The tracking block shift: the smallest shift at or above the minimum whose block count is at
     * most the maximum count, capped at {@link #MAX_BLOCK_SHIFT}. (v1 doubled the exponent instead;
     * that bug is not copied.)
     */
    public static int blockShift(long capacityBytes, ParamValues params) {
        int shift = params.trackingBlockMinimumShift();
        while (shift < MAX_BLOCK_SHIFT && blockCount(capacityBytes, shift) > params.trackingBlockMaximumCount()) {
            shift++;
        }
        return shift;
    }

    /** Number of blocks of 2^shift bytes needed to cover {@code capacityBytes}. */
    public static long blockCount(long capacityBytes, int shift) {
        long sectors = (capacityBytes + 511) >>> SECTOR_SHIFT;
        long sectorsPerBlock = 1L << (shift - SECTOR_SHIFT);
        return (sectors + sectorsPerBlock - 1) / sectorsPerBlock;
    }

    public String device() {
        return device;
    }

    public long capacityBytes() {
        return capacityBytes;
    }

    public int blockShift() {
        return blockShift;
    }

    public int blockSizeBytes() {
        return 1 << blockShift;
    }

    public int blockCount() {
        return blockCount;
    }

    public boolean isCorrupted() {
        return corrupted;
    }

    /** The block holding byte {@code offsetBytes}. */
    public long blockIndex(long offsetBytes) {
        return offsetBytes >>> blockShift;
    }

    /**
     * Marks the bytes {@code [offsetBytes, offsetBytes + lengthBytes)} written in the active
     * generation. A range past the map flags the map corrupted (it is rebuilt at the next take) and
     * is otherwise ignored; the write itself goes on.
     *
     * @return false if the range was past the map
     */
    public boolean mark(long offsetBytes, long lengthBytes) {
        if (lengthBytes <= 0) {
            return true;
        }
        if (corrupted) {
            return false;
        }
        long first = blockIndex(offsetBytes);
        long last = blockIndex(offsetBytes + lengthBytes - 1);
        if (last >= blockCount) {
            corrupted = true;
            return false;
        }
        byte a = (byte) active;
        for (int i = (int) first; i <= last; i++) {
            // Skip the store when it changes nothing, to keep shared cache lines clean.
            if (Byte.toUnsignedInt(writeMap[i]) < Byte.toUnsignedInt(a)) {
                writeMap[i] = a;
            }
        }
        return true;
    }

    /**
     * Marks the ranges in both maps: the write map gets the active number, the read map the previous
     * one, so the blocks show as changed now and in the next read map (mark-dirty of v1).
     *
     * @throws BlksnapException EINVAL for a range past the map (ranges before it stay marked), EFAULT if
     *                          the map is corrupted
     */
    public void markBoth(java.util.List<SectorRange> ranges) {
        lock.lock();
        try {
            if (corrupted) {
                throw new BlksnapException(Errno.EFAULT, device + ": CBT map is corrupted");
            }
            for (SectorRange r : ranges) {
                long first = blockIndex(r.offsetBytes());
                long last = blockIndex(r.offsetBytes() + r.lengthBytes() - 1);
                if (last >= blockCount) {
                    throw new BlksnapException(Errno.EINVAL, device + ": range " + r + " is past the end of the CBT map ("
                            + blockCount + " blocks of " + blockSizeBytes() + " bytes)");
                }
                int a = active;
                int p = previous;
                for (int i = (int) first; i <= last; i++) {
                    if (Byte.toUnsignedInt(writeMap[i]) < a) {
                        writeMap[i] = (byte) a;
                    }
                    if (Byte.toUnsignedInt(readMap[i]) < p) {
                        readMap[i] = (byte) p;
                    }
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * The switch at take: the read map becomes a copy of the write map and numbers advance. At the
     * wrap (the active number would reach 256) both maps are zeroed, a new generation starts and the
     * reported number is 0, so a client sees the new generation and does a full backup. (v1 left the
     * read map stale and reported 255; that bug is not copied.) Must run with writers held back.
     *
     * @return true if the numbers wrapped and a new generation (reason NUMBER_WRAPPED) started
     */
    public boolean switchAtTake() {
        lock.lock();
        try {
            int next = active + 1;
            if (next >= NUMBER_LIMIT) {
                Arrays.fill(writeMap, (byte) 0);
                Arrays.fill(readMap, (byte) 0);
                generationId = UUID.randomUUID();
                previous = 0;
                active = 1;
                reason = GenerationReason.NUMBER_WRAPPED;
                reasonDetail = "snapshot number would have reached " + NUMBER_LIMIT;
                return true;
            }
            System.arraycopy(writeMap, 0, readMap, 0, blockCount);
            previous = active;
            active = next;
            return false;
        } finally {
            lock.unlock();
        }
    }

    /** Whether the map must be rebuilt at take: it is corrupted or the capacity changed. */
    public boolean needsReset(long currentCapacityBytes) {
        return corrupted || currentCapacityBytes != capacityBytes;
    }

    /**
     * Copies up to {@code lengthBlocks} bytes of the read map starting at block {@code offsetBlocks}.
     *
     * @throws BlksnapException ENODATA if the offset is past the map, EINVAL for a negative argument,
     *                          EFAULT if the map is corrupted
     */
    public byte[] readMap(long offsetBlocks, int lengthBlocks) {
        lock.lock();
        try {
            if (offsetBlocks < 0 || lengthBlocks < 0) {
                throw new BlksnapException(Errno.EINVAL, device + ": CBT read offset (" + offsetBlocks + ") and length ("
                        + lengthBlocks + ") must be >= 0");
            }
            if (corrupted) {
                throw new BlksnapException(Errno.EFAULT, device + ": CBT map is corrupted");
            }
            if (offsetBlocks > blockCount) {
                throw new BlksnapException(Errno.ENODATA, device + ": CBT read offset " + offsetBlocks
                        + " is past the map of " + blockCount + " blocks");
            }
            int n = (int) Math.min(lengthBlocks, blockCount - offsetBlocks);
            return Arrays.copyOfRange(readMap, (int) offsetBlocks, (int) offsetBlocks + n);
        } finally {
            lock.unlock();
        }
    }

    /** The read-map value of one block (0..255). */
    public int readValue(int block) {
        lock.lock();
        try {
            return Byte.toUnsignedInt(readMap[block]);
        } finally {
            lock.unlock();
        }
    }

    /** The write-map value of one block (0..255). */
    public int writeValue(int block) {
        lock.lock();
        try {
            return Byte.toUnsignedInt(writeMap[block]);
        } finally {
            lock.unlock();
        }
    }

    /** Number of the last taken snapshot in this generation. */
    public int snapNumber() {
        return previous;
    }

    public int activeNumber() {
        return active;
    }

    public UUID generationId() {
        return generationId;
    }

    /** What TRACKER_COLLECT reports. */
    public CbtInfo info() {
        lock.lock();
        try {
            return new CbtInfo(device, blockSizeBytes(), capacityBytes, blockCount, generationId, previous, reason,
                    reasonDetail);
        } finally {
            lock.unlock();
        }
    }

    /** Bytes of heap the two maps take. */
    public long heapBytes() {
        return 2L * blockCount;
    }
}
