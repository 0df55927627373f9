package org.blksnap.engine.state;

import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.blksnap.engine.GenerationReason;
import org.blksnap.engine.tracker.CbtMap;
import org.blksnap.engine.tracker.TrackedDevice;
import org.blksnap.engine.tracker.Tracker;
import org.blksnap.engine.tracker.WriteJournal;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The persistent side of one tracker: its directory, the two journal files with their group
 * commit, the checkpoint epoch and the checkpoint procedure.
 *
 * <p><b>The journal.</b> {@link #recordWrite} runs inside the device's barrier right after the CBT
 * mark. For every touched region it does one acquire load of the epoch in which the region was last
 * recorded; if that is the current epoch, nothing else happens. Otherwise the region is queued and
 * the writer waits until a batch holding it is forced: the first waiter with no leader becomes the
 * leader, appends every queued record and forces the file once (group commit); the others wait on
 * a condition. The epoch only changes with the barrier closed, so within a write it is fixed. A
 * writer whose preceding regions are recorded in the epoch (a sequential stream) queues regions
 * ahead of its own too ({@link #lookAhead}), so a pass through the device syncs a few times
 * instead of once per region.
 *
 * <p><b>Checkpoints</b> are serialised by {@link #checkpointLock}. If the last checkpoint is durable
 * the idle journal (the file of the next epoch; its records are older than that checkpoint) is
 * emptied; then, with the device's barrier closed, the epoch advances and the maps are copied; the
 * barrier opens and the copy is written (new file, force, rename, force the directory). A write
 * either entered the barrier before the close, so its mark is in the copy, or after the open, so it
 * is journaled in the new epoch, which recovery replays. If a checkpoint fails the epoch does not
 * advance at the next attempt, so no journal file still needed is emptied.
 *
 * <p><b>Takes</b> advance the epoch too, with the barrier closed right after the switch, and queue a
 * take record of the new epoch ({@link #takeSwitched}); the take returns once it is forced
 * ({@link #takeWrite}), and the checkpoint of the new epoch is written after that (the store starts
 * it). Recovery replays the switch between the records of the two epochs. A take falls back to
 * copying the maps and writing them before it returns when the epoch cannot advance (the last
 * checkpoint is not durable yet, e.g. a take right after another whose checkpoint failed) or the take
 * started a new generation.
 *
 * <p><b>Failures.</b> If the journal cannot be written, the writer is never failed: the checkpoint
 * is renamed to {@code checkpoint.failed} (with the reason in {@code failed}) before any waiting
 * writer is released, so a crash gives a new generation (JOURNAL_FAILED) instead of an
 * under-report; journaling and running checkpoints stop; a clean stop still saves the exact maps.
 * Logged once.
 *
 * <p>Thread-safe. Lock order: checkpointLock, then the barrier; commitLock and fileLock are leaves
 * (never held while waiting for anything but I/O).
 */
final class DeviceState implements WriteJournal {
    private static final Logger LOG = LoggerFactory.getLogger(DeviceState.class);
    private static final VarHandle RECORDED = MethodHandles.arrayElementVarHandle(long[].class);
    static final String CHECKPOINT = "checkpoint";
    static final String CHECKPOINT_FAILED = "checkpoint.failed";
    static final String FAILED_NOTE = "failed";
    /**
     * Most regions per device: bounds the per-region epoch array to 32 MiB (a 10 TiB device with
     * 64 KiB regions would otherwise need 1.3 GB); the region grows instead.
     */
    static final long MAX_REGIONS = 1L << 22;
    /** Most bytes a sequential writer's journal sync records ahead of its own region ({@link #lookAhead}). */
    static final long LOOK_AHEAD_BYTES = 512L << 20;

    private final String device;
    private final Path dir;
    private final TrackedDevice trackedDevice;
    private final int regionShift;
    /** Per region: the epoch of its last durable record (0: none). Acquire/release through {@link #RECORDED}. */
    private final long[] recordedEpoch;
    private final FileChannel[] journals = new FileChannel[2];
    private final Path[] journalPaths = new Path[2];

    private final ReentrantLock checkpointLock = new ReentrantLock();
    /** Guards the group commit state and the journal files' lengths. */
    private final ReentrantLock commitLock = new ReentrantLock();
    private final Condition committed = commitLock.newCondition();
    /** Guards the checkpoint file's replacement against its invalidation. */
    private final ReentrantLock fileLock = new ReentrantLock();

    private volatile long epoch;
    /** Epoch of the last durable checkpoint; guarded by checkpointLock. */
    private long durableEpoch;
    /** Generation and active number of the last durable checkpoint (null: none yet); guarded by checkpointLock. */
    private UUID durableGeneration;
    private int durableActive;
    /**
     * The idle journal (of the next epoch's parity) is empty: the epoch may advance without I/O.
     * Guarded by checkpointLock (or set before the state is shared).
     */
    private boolean idleEmpty;
    /** A region was journaled since the last copy: a periodic checkpoint is due. */
    private volatile boolean dirty;
    /** The journal or a take's checkpoint failed: journaling and running checkpoints stopped. */
    private volatile boolean broken;
    private volatile boolean closed;

    // group commit, guarded by commitLock
    private final long[] journalBytes = new long[2];
    private List<JournalDescriptor.Record> queue = new ArrayList<>();
    /** Region of an epoch → the batch it is queued in, until that batch is durable. */
    private final Map<QueuedRegion, Long> queuedBatchOf = new HashMap<>();
    private long queueBatch = 1;
    private long durableBatch;
    private boolean leader;
    private final AtomicLong forces = new AtomicLong();
    /** Takes made durable as a journal record rather than a checkpoint (tests). */
    private final AtomicLong journaledTakes = new AtomicLong();

    /**
     * Opens (creating) the directory and the journal files, leaving their content: they are emptied
     * by {@link #resetJournals} once the first checkpoint of this state is durable.
     *
     * @param epoch the first epoch; {@link #writeInitial} writes it
     */
    DeviceState(String device, Path dir, TrackedDevice trackedDevice, int regionShift, long epoch) throws IOException {
        this.device = device;
        this.dir = dir;
        this.trackedDevice = trackedDevice;
        int shift = regionShift;
        while (regionCount(trackedDevice.sizeBytes(), shift) > MAX_REGIONS) {
            shift++;
        }
        if (shift != regionShift) {
            LOG.info("{}: journal regions of {} bytes (not {}), so that one device has at most {} regions", device,
                    1L << shift, 1L << regionShift, MAX_REGIONS);
        }
        this.regionShift = shift;
        this.recordedEpoch = new long[(int) Math.max(1, regionCount(trackedDevice.sizeBytes(), shift))];
        this.epoch = epoch;
        this.durableEpoch = epoch - 1;
        Files.createDirectories(dir);
        try {
            for (int i = 0; i < 2; i++) {
                journalPaths[i] = dir.resolve("journal." + i);
                journals[i] = FileChannel.open(journalPaths[i], StandardOpenOption.CREATE, StandardOpenOption.READ,
                        StandardOpenOption.WRITE);
            }
            StateFiles.forceDirectory(dir);
            StateFiles.forceDirectory(dir.getParent());
        } catch (IOException e) {
            closeJournals();
            throw e;
        }
    }

    /** Regions of 2^shift bytes covering {@code sizeBytes}. */
    static long regionCount(long sizeBytes, int shift) {
        return (sizeBytes + (1L << shift) - 1) >>> shift;
    }

    String device() {
        return device;
    }

    long epoch() {
        return epoch;
    }

    boolean dirty() {
        return dirty;
    }

    boolean broken() {
        return broken;
    }

    /** Takes journaled as a record so far (tests: both ways of a take are taken). */
    long journaledTakes() {
        return journaledTakes.get();
    }

    /** Journal forces so far (tests: group commit shares them). */
    long forces() {
        return forces.get();
    }

    // ---- the journal ------------------------------------------------------------------------------

    @Override
    public void recordWrite(long offsetBytes, long lengthBytes) {
        if (lengthBytes <= 0 || offsetBytes < 0) {
            return;
        }
        long e = epoch;
        int first = regionIndex(offsetBytes);
        int last = regionIndex(offsetBytes + lengthBytes - 1);
        for (int r = first; r <= last; r++) {
            if ((long) RECORDED.getAcquire(recordedEpoch, r) != e) {
                record(e, first, last);
                return;
            }
        }
    }

    private int regionIndex(long offsetBytes) {
        return (int) Math.min(offsetBytes >>> regionShift, recordedEpoch.length - 1L);
    }

    /**
     * The slow path: queue the regions not yet recorded in epoch {@code e} (and those {@link #lookAhead}
     * adds after them) and wait until the batch holding the writer's own regions is durable.
     */
    private void record(long e, int first, int last) {
        commitLock.lock();
        try {
            long mine = 0;
            int end = Math.min(last + lookAhead(e, first), recordedEpoch.length - 1);
            for (int r = first; r <= end; r++) {
                if (broken || closed) {
                    // Nothing is recorded any more; never ask again in this epoch.
                    raiseRecorded(r, e);
                    continue;
                }
                if ((long) RECORDED.getAcquire(recordedEpoch, r) >= e) {
                    continue;
                }
                QueuedRegion key = new QueuedRegion(e, r);
                Long batch = queuedBatchOf.get(key);
                if (batch == null) {
                    batch = queueBatch;
                    queuedBatchOf.put(key, batch);
                    queue.add(new JournalDescriptor.Entry(e, r, regionShift));
                    dirty = true;
                }
                if (r <= last) {
                    mine = Math.max(mine, batch);
                }
            }
            awaitDurable(mine);
        } finally {
            commitLock.unlock();
        }
    }

    /** commitLock held: until batch {@code batch} is durable (leading batches while no one else does), or the journal stopped. */
    private void awaitDurable(long batch) {
        while (batch > durableBatch && !broken && !closed) {
            if (leader) {
                committed.awaitUninterruptibly();
            } else {
                lead();
            }
        }
    }

    private record QueuedRegion(long epoch, long region) {
    }

    /**
     * Under commitLock: how many regions after the writer's to record in the same batch. A writer
     * that goes through the device in order (a restore, a first copy-on-write pass, a VM image being
     * written) would otherwise wait for one journal sync per region, each a device cache flush that
     * on a disk waits behind the writeback of everything written before it. So, like readahead, the
     * regions right behind {@code first} that are recorded (or queued) in this epoch are a stream, and
     * as many regions ahead are recorded with it: the window doubles as the stream goes on (1, 2, 4,
     * ... regions), is never longer than the run of recorded regions right behind, and never
     * {@link #LOOK_AHEAD_BYTES}. Random writers rarely find their neighbour recorded, so they record
     * little ahead. The price is over-report after a crash only (a region recorded ahead and not
     * written is marked changed at recovery: at most {@link #LOOK_AHEAD_BYTES} per sync, and for a
     * sequential writer at most what it wrote in the epoch); no write waits for a region it does not
     * touch.
     */
    private int lookAhead(long e, int first) {
        long maxAhead = LOOK_AHEAD_BYTES >>> regionShift;
        int run = 0;
        for (int r = first - 1; r >= 0 && run < maxAhead; r--) {
            if ((long) RECORDED.getAcquire(recordedEpoch, r) < e && !queuedBatchOf.containsKey(new QueuedRegion(e, r))) {
                break;
            }
            run++;
        }
        return run;
    }

    private void raiseRecorded(int region, long e) {
        if ((long) RECORDED.getAcquire(recordedEpoch, region) < e) {
            RECORDED.setRelease(recordedEpoch, region, e);
        }
    }

    /** commitLock held on entry and exit; released around the I/O. */
    private void lead() {
        leader = true;
        long batch = queueBatch++;
        List<JournalDescriptor.Record> records = queue;
        queue = new ArrayList<>();
        long[] at = new long[2];
        int[] count = new int[2];
        for (JournalDescriptor.Record r : records) {
            count[(int) (r.epoch() & 1)]++;
        }
        for (int f = 0; f < 2; f++) {
            at[f] = journalBytes[f];
            journalBytes[f] += (long) count[f] * JournalDescriptor.RECORD_BYTES;
        }
        commitLock.unlock();
        IOException failure = null;
        try {
            for (int f = 0; f < 2; f++) {
                if (count[f] == 0) {
                    continue;
                }
                ByteBuffer buf = ByteBuffer.allocate(count[f] * JournalDescriptor.RECORD_BYTES);
                for (JournalDescriptor.Record r : records) {
                    if ((r.epoch() & 1) == f) {
                        JournalDescriptor.put(buf, r);
                    }
                }
                StateFiles.writeFully(journals[f], buf.flip(), at[f], journalPaths[f]);
                try {
                    journals[f].force(false);
                } catch (IOException e) {
                    throw new IOException("forcing " + journalPaths[f] + ": " + e.getMessage(), e);
                }
                forces.incrementAndGet();
            }
        } catch (IOException e) {
            failure = e;
        } catch (RuntimeException e) {
            failure = new IOException(e.toString(), e);
        }
        if (failure != null) {
            // Still the leader: every writer of this batch waits until the state is invalidated.
            invalidate(GenerationReason.JOURNAL_FAILED, failure.getMessage());
        }
        commitLock.lock();
        for (JournalDescriptor.Record r : records) {
            if (r instanceof JournalDescriptor.Entry e) {
                queuedBatchOf.remove(new QueuedRegion(e.epoch(), e.regionIndex()));
                raiseRecorded((int) e.regionIndex(), e.epoch());
            }
        }
        durableBatch = batch;
        leader = false;
        committed.signalAll();
    }

    /**
     * Empties both journal files, after {@link #writeInitial} made a checkpoint durable that holds
     * everything they recorded. Before this, nothing may be journaled.
     */
    void resetJournals() throws IOException {
        emptyJournal(0);
        emptyJournal(1);
        idleEmpty = true;
    }

    /** Waits until no batch is being appended, then holds the commit (leader) role; no lock held on return. */
    private void takeCommitRole() {
        commitLock.lock();
        try {
            while (leader) {
                committed.awaitUninterruptibly();
            }
            leader = true;
        } finally {
            commitLock.unlock();
        }
    }

    /** Gives the commit role back after {@code underLock} ran with the commit lock held; wakes the waiters. */
    private void releaseCommitRole(Runnable underLock) {
        commitLock.lock();
        try {
            underLock.run();
            leader = false;
            committed.signalAll();
        } finally {
            commitLock.unlock();
        }
    }

    /** Empties journal file {@code f}, as the leader, so no batch is appended to it meanwhile. */
    private void emptyJournal(int f) throws IOException {
        takeCommitRole();
        try {
            journals[f].truncate(0);
            journals[f].force(true);
        } catch (IOException e) {
            throw new IOException("emptying " + journalPaths[f] + ": " + (e.getMessage() != null ? e.getMessage()
                    : e.getClass().getSimpleName()), e);
        } finally {
            releaseCommitRole(() -> journalBytes[f] = 0);
        }
    }

    // ---- checkpoints ------------------------------------------------------------------------------

    /**
     * A running checkpoint: empties the idle journal, closes the barrier briefly to advance the epoch
     * and copy the maps, then writes the copy durably. Does nothing once broken or closed (a failure
     * was already handled, or the state is gone).
     *
     * @return false if the checkpoint could not be written (the previous one stays and still holds)
     */
    boolean checkpoint() {
        checkpointLock.lock();
        try {
            if (broken || closed) {
                return true;
            }
            boolean advance = prepareAdvance();
            if (broken) {
                return true;
            }
            CbtMap.Saved copy;
            long stamp = trackedDevice.closeBarrier();
            try {
                copy = copyAndAdvance(advance, false);
            } finally {
                trackedDevice.openBarrier(stamp);
            }
            if (copy == null) {
                return true;
            }
            if (write(new Checkpoint(copy, epoch, false, null), false)) {
                emptyIdle(); // now, so that the next take or checkpoint advances the epoch without I/O
                return true;
            }
            return broken || closed;
        } finally {
            checkpointLock.unlock();
        }
    }

    /**
     * For a take: the first half, before the take closes the barriers. Takes the checkpoint lock
     * (held until {@link #takeDone}) and empties the idle journal if the epoch may advance.
     *
     * @return whether the epoch advances at {@link #takeSwitched}
     */
    boolean takeBegin() {
        checkpointLock.lock();
        if (broken || closed) {
            return false;
        }
        return prepareAdvance();
    }

    /**
     * What a take still has to make durable for one device after its switch: a take record in the
     * journal (batch {@code batch}), or a copy of the maps as a checkpoint; neither if the state is
     * broken or closed.
     */
    record TakeStep(long batch, CbtMap.Saved copy) {
        static final TakeStep NOTHING = new TakeStep(0, null);

        /** Whether the take was journaled as a record, so a checkpoint of the new epoch is due. */
        boolean journaled() {
            return batch > 0;
        }
    }

    /**
     * For a take, with the barrier closed, right after the switch. If the epoch may advance and the
     * switch only moved the numbers on from the durable checkpoint's (same generation, active + 1),
     * the epoch advances and a take record of the new epoch is queued: recovery replays the switch
     * from the checkpoint and the journal, so no copy of the maps is needed now. Otherwise (the last
     * checkpoint is not durable, or the take started a new generation) the maps are copied, to be
     * written as the checkpoint.
     */
    TakeStep takeSwitched(boolean advance) {
        if (broken || closed) {
            return TakeStep.NOTHING;
        }
        Tracker t = trackedDevice.tracker();
        if (t == null) {
            return TakeStep.NOTHING;
        }
        CbtMap m = t.cbt();
        if (advance && m.generationId().equals(durableGeneration) && m.snapNumber() == durableActive
                && m.activeNumber() == durableActive + 1) {
            long e = advanceEpoch();
            dirty = true; // the checkpoint of the new epoch is due
            commitLock.lock();
            try {
                if (broken || closed) {
                    return TakeStep.NOTHING;
                }
                queue.add(new JournalDescriptor.Take(e, m.snapNumber(), m.activeNumber(), m.generationId().hashCode()));
                journaledTakes.incrementAndGet();
                return new TakeStep(queueBatch, null);
            } finally {
                commitLock.unlock();
            }
        }
        return new TakeStep(0, copyAndAdvance(advance, true));
    }

    /**
     * For a take, after the barriers opened and before the images appear: makes the take durable,
     * as its journal record (a failure invalidates the state with JOURNAL_FAILED, as for any write)
     * or as a checkpoint; if the checkpoint fails, invalidates the state (CHECKPOINT_FAILED), because
     * the numbers on disk would now be behind the ones the backup tool is about to see.
     */
    void takeWrite(TakeStep step) {
        if (broken || closed) {
            return;
        }
        if (step.journaled()) {
            commitLock.lock();
            try {
                awaitDurable(step.batch());
            } finally {
                commitLock.unlock();
            }
            return;
        }
        if (step.copy() != null && !write(new Checkpoint(step.copy(), epoch, false, null), false) && !broken) {
            invalidate(GenerationReason.CHECKPOINT_FAILED, "the checkpoint at a take could not be written");
        }
    }

    /** Releases the checkpoint lock taken by {@link #takeBegin}. */
    void takeDone() {
        checkpointLock.unlock();
    }

    /**
     * The epoch moves on; the journal of the epoch before becomes the idle one, so it is not empty.
     * checkpointLock held (and, but at the clean stop, the barrier closed).
     *
     * @return the new epoch
     */
    private long advanceEpoch() {
        long e = epoch + 1;
        epoch = e;
        idleEmpty = false;
        return e;
    }

    /** Whether the epoch may advance; if so, the idle journal is empty on return. checkpointLock held. */
    private boolean prepareAdvance() {
        if (durableEpoch != epoch) {
            return false; // the last checkpoint failed or is not written yet: both journal files may still be needed
        }
        return emptyIdle();
    }

    /**
     * With the checkpoint of the current epoch durable: empties the idle journal (its records are of
     * epochs before that checkpoint) unless it is already empty. A failure invalidates the state
     * (JOURNAL_FAILED). checkpointLock held.
     *
     * @return whether the idle journal is empty
     */
    private boolean emptyIdle() {
        if (idleEmpty) {
            return true;
        }
        try {
            emptyJournal((int) ((epoch + 1) & 1));
            idleEmpty = true;
            return true;
        } catch (IOException e) {
            if (!closed) {
                invalidate(GenerationReason.JOURNAL_FAILED, e.getMessage());
            }
            return false;
        }
    }

    /**
     * Barrier closed, checkpointLock held.
     *
     * @param atSwitch right after the map switched at a take ({@link CbtMap#saveSwitched()}: one copy)
     */
    private CbtMap.Saved copyAndAdvance(boolean advance, boolean atSwitch) {
        Tracker t = trackedDevice.tracker();
        if (t == null) {
            return null;
        }
        if (advance) {
            advanceEpoch();
        }
        dirty = false;
        return atSwitch ? t.cbt().saveSwitched() : t.cbt().save();
    }

    /**
     * Writes {@code c}; a running checkpoint is not installed once broken (a clean one always is).
     *
     * @return whether it is now the durable checkpoint
     */
    private boolean write(Checkpoint c, boolean clean) {
        Path target = dir.resolve(CHECKPOINT);
        Path tmp = dir.resolve(CHECKPOINT + ".tmp");
        try {
            ByteBuffer[] content = CheckpointDescriptor.encodeParts(c);
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                    StandardOpenOption.TRUNCATE_EXISTING)) {
                StateFiles.writeSkippingZeros(ch, content, tmp);
                ch.force(true);
            }
            fileLock.lock();
            try {
                if ((broken && !clean) || closed) {
                    Files.deleteIfExists(tmp);
                    return false;
                }
                StateFiles.move(tmp, target);
            } finally {
                fileLock.unlock();
            }
            durableEpoch = c.epoch();
            durableGeneration = c.map().generationId();
            durableActive = c.map().active();
            return true;
        } catch (IOException | RuntimeException e) {
            LOG.warn("{}: checkpoint of epoch {} not written: {}", device, c.epoch(), e.toString());
            return false;
        }
    }

    /**
     * Writes the first checkpoint of this state (a new tracker or a recovered one), with the
     * barrier closed around the copy. Removes what a failed earlier run left.
     *
     * @return whether it is durable
     */
    boolean writeInitial(CbtMap.Saved map) {
        checkpointLock.lock();
        try {
            if (!write(new Checkpoint(map, epoch, false, null), false)) {
                return false;
            }
            try {
                boolean removed = Files.deleteIfExists(dir.resolve(CHECKPOINT_FAILED));
                removed |= Files.deleteIfExists(dir.resolve(FAILED_NOTE));
                if (removed) {
                    StateFiles.forceDirectory(dir);
                }
            } catch (IOException e) {
                LOG.warn("{}: cannot remove the notes of an earlier failure: {}", device, e.toString());
            }
            return true;
        } finally {
            checkpointLock.unlock();
        }
    }

    /**
     * The clean stop: the device is already marked removed; with the barrier closed once more (so no
     * write is still inside) the exact maps are copied; the backing device is closed; its identity is
     * read; the clean checkpoint is written (even if broken). Closes this state.
     *
     * @throws IOException if closing the backing device failed (the checkpoint is written anyway)
     */
    void saveClean() throws IOException {
        checkpointLock.lock();
        try {
            CbtMap.Saved copy;
            long stamp = trackedDevice.closeBarrier();
            try {
                Tracker t = trackedDevice.tracker();
                copy = t == null ? null : t.cbt().save();
            } finally {
                trackedDevice.openBarrier(stamp);
            }
            trackedDevice.setTracker(null);
            IOException closeFailure = null;
            try {
                trackedDevice.close();
            } catch (IOException e) {
                closeFailure = e;
            }
            if (copy != null && !closed) {
                BackingIdentity identity;
                try {
                    identity = BackingIdentity.of(trackedDevice.backing());
                } catch (IOException e) {
                    LOG.warn("{}: identity of the backing store not readable ({}); saved as size only", device, e.toString());
                    identity = BackingIdentity.sizeOnly(trackedDevice.backing().sizeBytes());
                }
                long e = advanceEpoch();
                if (write(new Checkpoint(copy, e, true, identity), true)) {
                    LOG.info("{}: tracker saved (generation {}, snapshot number {})", device, copy.generationId(),
                            copy.previous());
                } else {
                    LOG.error("{}: tracker NOT saved at stop; the next start gives it a new generation", device);
                }
            }
            close();
            if (closeFailure != null) {
                throw closeFailure;
            }
        } finally {
            checkpointLock.unlock();
        }
    }

    /**
     * Invalidates the state after a failure: notes the reason, renames the checkpoint away and forces
     * the directory, so that a crash from now on gives a new generation with {@code reason}. Logged
     * once. Never throws.
     */
    void invalidate(GenerationReason reason, String detail) {
        fileLock.lock();
        try {
            if (broken) {
                return;
            }
            broken = true;
            LOG.error("{}: {}: {}; change tracking goes on in memory, a clean stop still saves it, but after a crash"
                    + " this device gets a new generation", device, reason, detail);
            try {
                StateFiles.replace(dir.resolve(FAILED_NOTE), ByteBuffer.wrap((reason.name() + "\n" + detail)
                        .getBytes(StandardCharsets.UTF_8)));
            } catch (IOException e) {
                LOG.warn("{}: cannot note the failure: {}", device, e.toString());
            }
            try {
                Path ck = dir.resolve(CHECKPOINT);
                if (Files.exists(ck)) {
                    StateFiles.move(ck, dir.resolve(CHECKPOINT_FAILED));
                }
            } catch (IOException e) {
                try {
                    Files.deleteIfExists(dir.resolve(CHECKPOINT));
                    StateFiles.forceDirectory(dir);
                } catch (IOException d) {
                    LOG.error("{}: cannot invalidate the checkpoint ({}); after a crash its CBT may under-report",
                            device, d.toString());
                }
            }
        } finally {
            fileLock.unlock();
        }
        commitLock.lock();
        try {
            committed.signalAll();
        } finally {
            commitLock.unlock();
        }
    }

    /** {@link #close()} after any checkpoint in progress (the tracker or its device is being removed). */
    void closeForRemoval() {
        checkpointLock.lock();
        try {
            close();
        } finally {
            checkpointLock.unlock();
        }
    }

    /** Stops journaling (waiters are released) and closes the journal files. Idempotent. */
    void close() {
        fileLock.lock();
        try {
            closed = true;
        } finally {
            fileLock.unlock();
        }
        commitLock.lock();
        try {
            while (leader) {
                committed.awaitUninterruptibly();
            }
            committed.signalAll();
        } finally {
            commitLock.unlock();
        }
        closeJournals();
    }

    /** What a test runs while the state's files hold still. */
    @FunctionalInterface
    interface FrozenAction {
        void run() throws IOException;
    }

    /**
     * Tests: runs {@code action} while nothing of this state changes on disk (no journal append or
     * truncation: the commit role is held; no checkpoint installed or invalidated: the file lock is
     * held), so a copy of the directory is what a crash at this moment would leave.
     */
    void whileFrozen(FrozenAction action) throws IOException {
        takeCommitRole();
        fileLock.lock();
        try {
            action.run();
        } finally {
            fileLock.unlock();
            releaseCommitRole(() -> { });
        }
    }

    /** Tests: closes the journal files behind the journal's back, so every later append fails as on a dying disk. */
    void closeJournalFilesUnderneath() {
        closeJournals();
    }

    /** The valid region records now in journal file {@code f} (tests). */
    List<JournalDescriptor.Entry> journalRecords(int f) throws IOException, StateCorruptException {
        return JournalDescriptor.regions(journalContent(f));
    }

    /** Every valid record now in journal file {@code f}, takes included (tests). */
    List<JournalDescriptor.Record> journalContent(int f) throws IOException, StateCorruptException {
        return JournalDescriptor.read(journalPaths[f]);
    }

    private void closeJournals() {
        for (FileChannel ch : journals) {
            if (ch != null) {
                try {
                    ch.close();
                } catch (IOException e) {
                    LOG.warn("{}: closing a journal failed: {}", device, e.toString());
                }
            }
        }
    }
}
