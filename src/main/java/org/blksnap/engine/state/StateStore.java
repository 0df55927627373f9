package org.blksnap.engine.state;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.blksnap.engine.GenerationReason;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Persistence;
import org.blksnap.engine.diff.StorageLedger;
import org.blksnap.engine.tracker.CbtMap;
import org.blksnap.engine.tracker.TrackedDevice;
import org.blksnap.engine.tracker.Tracker;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The engine's persistent state (docs/persistence.md): trackers under {@code trackers/<device>/}
 * and the ledger of difference-storage files, in {@link Persistence#directory()}. With
 * {@link Persistence#NONE} every method keeps the old in-memory behaviour and writes nothing.
 *
 * <p>The engine calls it at each point where a tracker's life touches the disk: a tracker restored
 * when its device is added ({@link #restore}), attached ({@link #attachNew}), made durable at a take
 * ({@link #beginTake}: a take record in the journal, the checkpoint after it in the background) and
 * checkpointed after mark-dirty ({@link #checkpoint}), forgotten when the tracker or the device is
 * removed ({@link #forget}), saved at exit ({@link #saveAtExit}). A background virtual thread
 * checkpoints written trackers every {@link Persistence#checkpointInterval()}; {@link #close} stops
 * it and waits for the checkpoints after takes.
 *
 * <p>Thread-safe. Failures of the disk never fail an engine operation: they are logged and turn
 * into a new generation with a reason after a crash.
 */
public final class StateStore implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(StateStore.class);
    static final String TRACKERS = "trackers";
    /** Longest failure note read back. */
    private static final int MAX_NOTE_BYTES = 8192;

    private final Persistence persistence;
    private final Path trackersDir;
    private final StorageLedger ledger;
    private final ConcurrentHashMap<String, DeviceState> states = new ConcurrentHashMap<>();
    private final CountDownLatch stop = new CountDownLatch(1);
    private final Thread checkpointer;
    /** Checkpoints running after takes ({@link #checkpointInBackground}). */
    private final Set<Thread> background = ConcurrentHashMap.newKeySet();

    private StateStore(Persistence persistence, StorageLedger ledger) {
        this.persistence = persistence;
        this.trackersDir = persistence.enabled() ? persistence.directory().resolve(TRACKERS) : null;
        this.ledger = ledger;
        this.checkpointer = persistence.enabled()
                ? Thread.ofVirtual().name("blksnap-checkpoints").start(this::checkpointLoop) : null;
    }

    /**
     * Opens the state directory (creating it), removes the difference-storage files the engine
     * created for snapshots of an earlier run that did not stop cleanly, and starts the periodic
     * checkpoints.
     *
     * @throws IOException if the directory cannot be created or the ledger cannot be rewritten
     */
    public static StateStore open(Persistence persistence) throws IOException {
        if (!persistence.enabled()) {
            return new StateStore(persistence, StorageLedger.NONE);
        }
        Files.createDirectories(persistence.directory().resolve(TRACKERS));
        StorageLedgerFile ledger = new StorageLedgerFile(persistence.directory());
        ledger.cleanUp();
        LOG.info("change tracking persists in {} (regions of {} bytes, checkpoints every {})", persistence.directory(),
                persistence.regionBytes(), persistence.checkpointInterval());
        return new StateStore(persistence, ledger);
    }

    /** The ledger of difference-storage files, for the snapshots' storage. */
    public StorageLedger storageLedger() {
        return ledger;
    }

    /** The persistence settings. */
    public Persistence persistence() {
        return persistence;
    }

    // ---- attach and restore -----------------------------------------------------------------------

    /**
     * A new tracker for {@code d} (generation reason NEW_TRACKER), checkpointed before it is
     * returned so that a crash right after still knows the device is tracked. The caller attaches it.
     */
    public Tracker attachNew(TrackedDevice d, ParamValues values) {
        CbtMap map = CbtMap.create(d.name(), d.sizeBytes(), values);
        if (trackersDir == null) {
            return new Tracker(d.name(), map);
        }
        Path dir = trackersDir.resolve(d.name());
        try {
            StateFiles.deleteTree(dir);
            DeviceState st = new DeviceState(d.name(), dir, d, persistence.regionShift(), 1);
            start(st, map);
            states.put(d.name(), st);
            return new Tracker(d.name(), map, st);
        } catch (IOException | RuntimeException e) {
            LOG.error("{}: tracker state cannot be created in {} ({}); this tracker lives in memory only", d.name(), dir,
                    e.toString());
            return new Tracker(d.name(), map);
        }
    }

    /** The first checkpoint of a state, then empty journals; a failure invalidates the state. */
    private static void start(DeviceState st, CbtMap map) {
        if (!st.writeInitial(map.save())) {
            st.invalidate(GenerationReason.CHECKPOINT_FAILED, "the first checkpoint could not be written");
            return;
        }
        try {
            st.resetJournals();
        } catch (IOException e) {
            st.invalidate(GenerationReason.JOURNAL_FAILED, e.getMessage());
        }
    }

    /**
     * The tracker {@code d} had when the engine last ran, or null if it had none (or persistence is
     * off). Never throws: a missing, torn, corrupted, truncated or foreign state, a changed size or
     * (after a clean stop) a changed backing store gives a tracker with a new generation and the
     * reason, logged and reported by the first snapshot created over the device. After a crash the
     * generation goes on and every region journaled since the checkpoint is raised to the active
     * number. Before returning, a fresh checkpoint is durable and the journals are empty.
     */
    public Tracker restore(TrackedDevice d, ParamValues values) {
        if (trackersDir == null) {
            return null;
        }
        Path dir = trackersDir.resolve(d.name());
        if (!Files.isDirectory(dir)) {
            return null;
        }
        Recovered r;
        try {
            r = recover(d, dir, values);
        } catch (RuntimeException e) {
            r = new Recovered(CbtMap.create(d.name(), d.sizeBytes(), values, GenerationReason.STATE_CORRUPT,
                    dir + ": " + e), 1, true);
        }
        CbtMap map = r.map();
        if (r.reset()) {
            LOG.warn("{}: tracker restored with a NEW generation {}: {}: {}", d.name(), map.generationId(), map.reason(),
                    map.reasonDetail());
        }
        try {
            DeviceState st = new DeviceState(d.name(), dir, d, persistence.regionShift(), r.nextEpoch());
            start(st, map);
            states.put(d.name(), st);
            Tracker t = new Tracker(d.name(), map, st);
            t.setResetUnreported(r.reset());
            return t;
        } catch (IOException | RuntimeException e) {
            LOG.error("{}: tracker state in {} cannot be reopened ({}); this tracker lives in memory only", d.name(), dir,
                    e.toString());
            Tracker t = new Tracker(d.name(), map);
            t.setResetUnreported(r.reset());
            return t;
        }
    }

    /** What recovery found: the map to attach, the first epoch of the new run, whether it is a new generation. */
    private record Recovered(CbtMap map, long nextEpoch, boolean reset) {
    }

    private Recovered recover(TrackedDevice d, Path dir, ParamValues values) {
        String name = d.name();
        long size = d.sizeBytes();
        Path ck = dir.resolve(DeviceState.CHECKPOINT);
        Checkpoint c = null;
        GenerationReason reason = null;
        String detail = null;
        if (!Files.exists(ck)) {
            Path failed = dir.resolve(DeviceState.CHECKPOINT_FAILED);
            if (Files.exists(failed)) {
                String[] note = readNote(dir.resolve(DeviceState.FAILED_NOTE));
                reason = note[0].equals(GenerationReason.CHECKPOINT_FAILED.name())
                        ? GenerationReason.CHECKPOINT_FAILED : GenerationReason.JOURNAL_FAILED;
                detail = "the last run invalidated " + ck + ": " + note[1];
            } else {
                reason = GenerationReason.STATE_MISSING;
                detail = ck + " not found";
            }
        } else {
            try (FileChannel ch = FileChannel.open(ck, StandardOpenOption.READ)) {
                c = CheckpointDescriptor.decode(ch, ck);
            } catch (StateCorruptException e) {
                reason = GenerationReason.STATE_CORRUPT;
                detail = e.getMessage();
            } catch (IOException e) {
                reason = GenerationReason.STATE_CORRUPT;
                detail = ck + ": cannot be read: " + e.getMessage();
            }
        }
        long maxEpoch = c == null ? 0 : c.epoch();
        List<JournalDescriptor.Record> records = new ArrayList<>();
        for (int f = 0; f < 2; f++) {
            Path jp = dir.resolve("journal." + f);
            try {
                records.addAll(JournalDescriptor.read(jp));
            } catch (IOException | StateCorruptException e) {
                if (c != null && !c.clean() && reason == null) {
                    reason = GenerationReason.STATE_CORRUPT;
                    detail = e instanceof StateCorruptException ? e.getMessage()
                            : jp + ": cannot be read: " + e.getMessage();
                }
            }
        }
        for (JournalDescriptor.Record e : records) {
            maxEpoch = Math.max(maxEpoch, e.epoch());
        }
        if (c != null && reason == null) {
            CbtMap.Saved saved = c.map();
            if (!saved.device().equals(name)) {
                reason = GenerationReason.STATE_CORRUPT;
                detail = ck + ": the checkpoint is of device '" + saved.device() + "'";
            } else if (saved.capacityBytes() != size) {
                reason = GenerationReason.SIZE_CHANGED;
                detail = "the map was saved for " + saved.capacityBytes() + " bytes; " + d.backing().name() + " has "
                        + size + " bytes now";
            } else if (c.clean()) {
                try {
                    String diff = c.identity().differenceTo(BackingIdentity.of(d.backing()));
                    if (diff != null) {
                        reason = GenerationReason.BACKING_CHANGED;
                        detail = d.backing().name() + " changed while blksnapd was stopped: " + diff;
                    }
                } catch (IOException e) {
                    reason = GenerationReason.BACKING_CHANGED;
                    detail = d.backing().name() + ": identity cannot be read: " + e.getMessage();
                }
            }
        }
        if (c != null && reason == null) {
            CbtMap map;
            try {
                map = CbtMap.restore(c.map());
            } catch (IllegalArgumentException e) {
                return new Recovered(CbtMap.create(name, size, values, GenerationReason.STATE_CORRUPT,
                        ck + ": " + e.getMessage()), maxEpoch + 1, true);
            }
            if (c.clean()) {
                LOG.info("{}: tracker restored after a clean stop: generation {}, snapshot number {}", name,
                        map.generationId(), map.snapNumber());
            } else {
                String wrong = replay(map, c.epoch(), records);
                if (wrong != null) {
                    return new Recovered(CbtMap.create(name, size, values, GenerationReason.STATE_CORRUPT,
                            dir + ": " + wrong), maxEpoch + 1, true);
                }
            }
            return new Recovered(map, maxEpoch + 1, false);
        }
        return new Recovered(CbtMap.create(name, size, values, reason, detail), maxEpoch + 1, true);
    }

    /**
     * After a crash: brings {@code map}, restored from the checkpoint of epoch {@code epoch}, up to
     * what the journal says happened since. Every region record of the checkpoint's epoch raises its
     * region to the checkpoint's active number; a take record of the next epoch (a take whose
     * checkpoint was not durable yet) then switches the maps as that take did; every region record of
     * a later epoch raises its region to the number after it. Takes of the checkpoint's epoch or
     * earlier are in the checkpoint already.
     *
     * @return null, or what is wrong with the journal (a take that does not follow the checkpoint)
     */
    static String replay(CbtMap map, long epoch, List<JournalDescriptor.Record> records) {
        JournalDescriptor.Take take = null;
        for (JournalDescriptor.Record r : records) {
            if (r instanceof JournalDescriptor.Take t && t.epoch() > epoch) {
                if (take != null || t.epoch() != epoch + 1) {
                    return "the journal holds a take of epoch " + t.epoch() + (take != null ? " besides one of epoch "
                            + take.epoch() : "") + " after the checkpoint of epoch " + epoch;
                }
                take = t;
            }
        }
        if (take != null && (take.previous() != map.activeNumber() || take.active() != map.activeNumber() + 1
                || take.generationHash() != map.generationId().hashCode())) {
            return "the journal's take of epoch " + take.epoch() + " (snapshot numbers " + take.previous() + "/"
                    + take.active() + ") does not follow the checkpoint (" + map.snapNumber() + "/" + map.activeNumber()
                    + ", generation " + map.generationId() + ")";
        }
        long lastBefore = take == null ? Long.MAX_VALUE : epoch;
        int raised = raise(map, records, epoch, lastBefore);
        if (take != null) {
            map.switchAtTake();
            raised += raise(map, records, take.epoch(), Long.MAX_VALUE);
        }
        LOG.warn("{}: blksnapd did not stop cleanly; tracker restored (generation {}, snapshot number {}{}) and {}"
                + " journaled region(s) raised", map.device(), map.generationId(), map.snapNumber(),
                take == null ? "" : ", from the journal's take of epoch " + take.epoch(), raised);
        return null;
    }

    /** Raises the regions of every region record of an epoch in [from, to] to the map's active number. */
    private static int raise(CbtMap map, List<JournalDescriptor.Record> records, long from, long to) {
        int raised = 0;
        for (JournalDescriptor.Record r : records) {
            if (r instanceof JournalDescriptor.Entry e && e.epoch() >= from && e.epoch() <= to) {
                map.raise(e.offsetBytes(), e.lengthBytes());
                raised++;
            }
        }
        return raised;
    }

    /** {reason name, detail} from a failure note; unknown parts are "?". */
    private static String[] readNote(Path p) {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate((int) Math.min(ch.size(), MAX_NOTE_BYTES));
            StateFiles.readFully(ch, b, 0, p);
            String text = new String(b.array(), 0, b.position(), StandardCharsets.UTF_8);
            int nl = text.indexOf('\n');
            return nl < 0 ? new String[] {text, "?"} : new String[] {text.substring(0, nl), text.substring(nl + 1)};
        } catch (IOException e) {
            return new String[] {"?", "no note (" + e.getMessage() + ")"};
        }
    }

    // ---- checkpoints ------------------------------------------------------------------------------

    /**
     * Checkpoints {@code device} now (after mark-dirty changed its maps outside the write path). If
     * that fails the state is invalidated, since the marks would otherwise be lost in a crash.
     */
    public void checkpoint(String device) {
        DeviceState st = states.get(device);
        if (st != null && !st.checkpoint()) {
            st.invalidate(GenerationReason.CHECKPOINT_FAILED, "the checkpoint after mark-dirty could not be written");
        }
    }

    private void checkpointLoop() {
        long intervalNanos = persistence.checkpointInterval().toNanos();
        while (true) {
            try {
                if (stop.await(intervalNanos, TimeUnit.NANOSECONDS)) {
                    return;
                }
            } catch (InterruptedException e) {
                return;
            }
            List<DeviceState> due = new ArrayList<>();
            for (DeviceState st : states.values()) {
                if (st.dirty() && !st.broken()) {
                    due.add(st);
                }
            }
            checkpointAll(due, "periodic checkpoint");
        }
    }

    /**
     * Checkpoints {@code due} at the same time ({@link #runTogether}: the file system commits their
     * syncs together). A failure is logged: the previous checkpoint and the journal still hold.
     */
    private static void checkpointAll(List<DeviceState> due, String what) {
        List<String> names = new ArrayList<>(due.size());
        List<Runnable> work = new ArrayList<>(due.size());
        for (DeviceState st : due) {
            names.add(st.device());
            work.add(() -> {
                try {
                    st.checkpoint();
                } catch (RuntimeException e) {
                    LOG.error("{}: {} failed", st.device(), what, e);
                }
            });
        }
        if (!work.isEmpty()) {
            runTogether("checkpoint-", names, work);
        }
    }

    /**
     * What a take makes durable, in steps around the take's barrier: {@link #beginTake} before the
     * barriers close (takes each device's checkpoint lock, in name order, waiting for a checkpoint
     * being written, and sees that the idle journals are empty: normally they were emptied right after
     * the last checkpoint), {@link Take#switched} with the barriers closed right after the maps
     * switched (the epoch advances and a take record is queued in the journal, or the maps are
     * copied), {@link Take#commit} after they open and before the images appear (the records or
     * copies are made durable), and {@link Take#close} (the locks go; the checkpoints of the new
     * epochs are written in the background).
     */
    public Take beginTake(List<TrackedDevice> devices) {
        List<TrackedDevice> order = new ArrayList<>(devices);
        order.sort(Comparator.comparing(TrackedDevice::name));
        Take take = new Take(this);
        for (TrackedDevice d : order) {
            DeviceState st = states.get(d.name());
            if (st != null) {
                take.add(d.name(), st);
            }
        }
        return take;
    }

    /** One take's durable part; see {@link #beginTake}. Used by the taking thread only. */
    public static final class Take implements AutoCloseable {
        /** Devices of one take made durable at the same time (a checkpoint holds its copy of the maps, 2 bytes per block, in heap). */
        static final int PARALLEL_COMMITS = 8;

        private final StateStore store;
        private final List<String> names = new ArrayList<>();
        private final List<DeviceState> states = new ArrayList<>();
        private final List<Boolean> advance = new ArrayList<>();
        private final List<DeviceState.TakeStep> steps = new ArrayList<>();

        private Take(StateStore store) {
            this.store = store;
        }

        private void add(String name, DeviceState st) {
            names.add(name);
            states.add(st);
            advance.add(st.takeBegin());
            steps.add(DeviceState.TakeStep.NOTHING);
        }

        /** With the device's barrier closed, right after its map switched. */
        public void switched(TrackedDevice d) {
            int i = names.indexOf(d.name());
            if (i >= 0) {
                steps.set(i, states.get(i).takeSwitched(advance.get(i)));
            }
        }

        /**
         * After the barriers opened: every device's take is durable when this returns (its journal
         * record forced, or its checkpoint written), or its state invalidated. The devices are done at
         * the same time, at most {@link #PARALLEL_COMMITS} at once, each on its own virtual thread: the
         * file system then commits their syncs together instead of one device after another.
         */
        public void commit() {
            List<Runnable> work = new ArrayList<>(states.size());
            for (int i = 0; i < states.size(); i++) {
                DeviceState st = states.get(i);
                DeviceState.TakeStep step = steps.get(i);
                work.add(() -> st.takeWrite(step));
            }
            runTogether("take-", names, work);
        }

        /** Releases the checkpoint locks; the devices whose take went to the journal are checkpointed in the background. */
        @Override
        public void close() {
            List<DeviceState> due = new ArrayList<>();
            for (int i = states.size() - 1; i >= 0; i--) {
                states.get(i).takeDone();
                if (steps.get(i).journaled()) {
                    due.add(states.get(i));
                }
            }
            if (!due.isEmpty()) {
                store.checkpointInBackground(due);
            }
        }
    }

    /**
     * Runs {@code work} (one task per device of {@code names}) at most {@link Take#PARALLEL_COMMITS}
     * at once, each on a virtual thread, and returns when all are done, uninterruptibly (one task
     * runs on the caller). An Error or RuntimeException of a task is rethrown after all finished.
     */
    static void runTogether(String prefix, List<String> names, List<Runnable> work) {
        if (work.size() == 1) {
            work.getFirst().run();
            return;
        }
        Semaphore room = new Semaphore(Take.PARALLEL_COMMITS);
        List<Thread> threads = new ArrayList<>(work.size());
        List<Throwable> failures = new CopyOnWriteArrayList<>();
        for (int i = 0; i < work.size(); i++) {
            Runnable task = work.get(i);
            room.acquireUninterruptibly();
            try {
                threads.add(Thread.ofVirtual().name(prefix + names.get(i)).start(() -> {
                    try {
                        task.run();
                    } catch (Throwable t) {
                        failures.add(t);
                    } finally {
                        room.release();
                    }
                }));
            } catch (Throwable t) {
                room.release();
                throw t;
            }
        }
        boolean interrupted = false;
        for (Thread w : threads) {
            while (true) {
                try {
                    w.join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true; // what the tasks make durable must be so before the caller goes on
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        if (!failures.isEmpty()) {
            Throwable first = failures.getFirst();
            if (first instanceof Error e) {
                throw e;
            }
            throw (RuntimeException) first;
        }
    }

    /**
     * Checkpoints {@code due} on a background virtual thread (after a take journaled as records), so
     * that the next take can again advance the epoch with a record instead of a copy. A failure only
     * logs: the previous checkpoint and the journal still hold.
     */
    private void checkpointInBackground(List<DeviceState> due) {
        Thread t = Thread.ofVirtual().name("blksnap-take-checkpoints").unstarted(() -> {
            try {
                checkpointAll(due, "checkpoint after a take");
            } finally {
                background.remove(Thread.currentThread());
            }
        });
        background.add(t);
        t.start();
    }

    /**
     * Waits until the checkpoints started after takes are written ({@link #close}; tests and the
     * engine probe, which times how long after a take they land).
     */
    public void awaitBackground() {
        for (Thread t : List.copyOf(background)) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    // ---- forget, save, close ----------------------------------------------------------------------

    /** Deletes the persisted state of {@code device} (its tracker or the device was removed). Never throws. */
    public void forget(String device) {
        if (trackersDir == null) {
            return;
        }
        DeviceState st = states.remove(device);
        if (st != null) {
            st.closeForRemoval();
        }
        try {
            StateFiles.deleteTree(trackersDir.resolve(device));
        } catch (IOException e) {
            LOG.error("{}: its saved tracker state in {} cannot be deleted: {}", device, trackersDir.resolve(device),
                    e.toString());
        }
    }

    /**
     * The clean stop of one device: no write gets in any more, the exact maps are saved with the
     * clean flag and the backing store's identity (read after the backing device is closed), and the
     * device is closed. For a device without a persisted tracker it only closes the device.
     *
     * @throws IOException if closing the backing device failed
     */
    public void saveAtExit(TrackedDevice d) throws IOException {
        d.markRemoved();
        DeviceState st = states.remove(d.name());
        if (st == null) {
            d.setTracker(null);
            d.close();
            return;
        }
        st.saveClean();
    }

    /** Stops the periodic checkpoints and closes what is left open. Idempotent. */
    @Override
    public void close() {
        stop.countDown();
        if (checkpointer != null) {
            try {
                checkpointer.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        awaitBackground();
        for (DeviceState st : states.values()) {
            st.close();
        }
        states.clear();
    }

    /** The state of a device (tests). */
    DeviceState state(String device) {
        return states.get(device);
    }
}
