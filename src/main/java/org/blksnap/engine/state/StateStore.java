package org.blksnap.engine.state;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
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
 * when its device is added ({@link #restore}), attached ({@link #attachNew}), checkpointed at a take
 * ({@link #beginTake}) and after mark-dirty ({@link #checkpoint}), forgotten when the tracker or the
 * device is removed ({@link #forget}), saved at exit ({@link #saveAtExit}). A background virtual
 * thread checkpoints written trackers every {@link Persistence#checkpointInterval()}; {@link #close}
 * stops it.
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
        List<JournalDescriptor.Entry> records = new ArrayList<>();
        for (int f = 0; f < 2; f++) {
            Path jp = dir.resolve("journal." + f);
            try {
                records.addAll(readJournal(jp));
            } catch (IOException e) {
                if (c != null && !c.clean() && reason == null) {
                    reason = GenerationReason.STATE_CORRUPT;
                    detail = jp + ": cannot be read: " + e.getMessage();
                }
            }
        }
        for (JournalDescriptor.Entry e : records) {
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
                int raised = 0;
                for (JournalDescriptor.Entry e : records) {
                    if (e.epoch() >= c.epoch()) {
                        map.raise(e.offsetBytes(), e.lengthBytes());
                        raised++;
                    }
                }
                LOG.warn("{}: blksnapd did not stop cleanly; tracker restored (generation {}, snapshot number {}) and {}"
                        + " journaled region(s) raised to {}", name, map.generationId(), map.snapNumber(), raised,
                        map.activeNumber());
            }
            return new Recovered(map, maxEpoch + 1, false);
        }
        return new Recovered(CbtMap.create(name, size, values, reason, detail), maxEpoch + 1, true);
    }

    /** The valid records of a journal file (none if it is missing). */
    private static List<JournalDescriptor.Entry> readJournal(Path p) throws IOException {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            long size = Math.min(ch.size(), JournalDescriptor.MAX_FILE_BYTES);
            ByteBuffer b = ByteBuffer.allocate((int) size);
            StateFiles.readFully(ch, b, 0, p);
            return JournalDescriptor.scan(b.flip());
        } catch (NoSuchFileException e) {
            return List.of();
        }
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
            for (DeviceState st : states.values()) {
                try {
                    if (st.dirty() && !st.broken()) {
                        st.checkpoint();
                    }
                } catch (RuntimeException e) {
                    LOG.error("{}: periodic checkpoint failed", st.device(), e);
                }
            }
        }
    }

    /**
     * The checkpoint of a take, in three steps around the take's barrier: {@link #beginTake} before
     * the barriers close (takes each device's checkpoint lock, in name order, and empties idle
     * journals), {@link Take#switched} with the barriers closed right after the maps switched (the
     * epoch advances and the maps are copied), {@link Take#commit} after they open and before the
     * images appear (the copies are made durable), and {@link Take#close} (the locks go).
     */
    public Take beginTake(List<TrackedDevice> devices) {
        List<TrackedDevice> order = new ArrayList<>(devices);
        order.sort(Comparator.comparing(TrackedDevice::name));
        Take take = new Take();
        for (TrackedDevice d : order) {
            DeviceState st = states.get(d.name());
            if (st != null) {
                take.add(d.name(), st);
            }
        }
        return take;
    }

    /** One take's checkpoints; see {@link #beginTake}. Used by the taking thread only. */
    public static final class Take implements AutoCloseable {
        /** Checkpoints of one take written at the same time (each holds its encoded file, 2 bytes per block, in heap). */
        static final int PARALLEL_COMMITS = 8;

        private final List<String> names = new ArrayList<>();
        private final List<DeviceState> states = new ArrayList<>();
        private final List<Boolean> advance = new ArrayList<>();
        private final List<CbtMap.Saved> copies = new ArrayList<>();

        private Take() {
        }

        private void add(String name, DeviceState st) {
            names.add(name);
            states.add(st);
            advance.add(st.takeBegin());
            copies.add(null);
        }

        /** With the device's barrier closed, right after its map switched. */
        public void switched(TrackedDevice d) {
            int i = names.indexOf(d.name());
            if (i >= 0) {
                copies.set(i, states.get(i).takeSwitched(advance.get(i)));
            }
        }

        /**
         * After the barriers opened: every copy is durable when this returns (or its state invalidated).
         * The devices' checkpoints are written at the same time, at most {@link #PARALLEL_COMMITS} at
         * once, each on its own virtual thread: the file system then commits their syncs together
         * instead of one device after another (64 devices of 1 TiB marked all over, 8 MiB each, on
         * ext4: a take of 491-535 ms before, 399-420 ms with this; docs/BENCHMARKS.md, cost curves).
         */
        public void commit() {
            if (states.size() == 1) {
                states.getFirst().takeWrite(copies.getFirst());
                return;
            }
            Semaphore room = new Semaphore(PARALLEL_COMMITS);
            List<Thread> writers = new ArrayList<>(states.size());
            List<Throwable> failures = new CopyOnWriteArrayList<>();
            for (int i = 0; i < states.size(); i++) {
                DeviceState st = states.get(i);
                CbtMap.Saved copy = copies.get(i);
                room.acquireUninterruptibly();
                try {
                    writers.add(Thread.ofVirtual().name("checkpoint-" + names.get(i)).start(() -> {
                        try {
                            st.takeWrite(copy);
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
            for (Thread w : writers) {
                while (true) {
                    try {
                        w.join();
                        break;
                    } catch (InterruptedException e) {
                        interrupted = true; // the copies must be durable (or invalidated) before the take goes on
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

        @Override
        public void close() {
            for (int i = states.size() - 1; i >= 0; i--) {
                states.get(i).takeDone();
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
