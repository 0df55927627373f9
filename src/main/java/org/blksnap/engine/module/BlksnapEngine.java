package org.blksnap.engine.module;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;
import java.util.regex.Pattern;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.CbtInfo;
import org.blksnap.engine.EngineListener;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ImageInfo;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Params;
import org.blksnap.engine.Persistence;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Status;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.Version;
import org.blksnap.engine.device.NativeIo;
import org.blksnap.engine.snapshot.ImageRegistry;
import org.blksnap.engine.snapshot.Snapshot;
import org.blksnap.engine.state.StateStore;
import org.blksnap.engine.tracker.CbtMap;
import org.blksnap.engine.tracker.TrackedDevice;
import org.blksnap.engine.tracker.Tracker;
import org.blksnap.util.FirstFailure;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The engine behind {@link Blksnap}. Control operations are serialised by one lock (as the module's
 * ioctls are by its mutexes); I/O never takes it. {@link #snapshotWaitEvent} waits outside it.
 */
final class BlksnapEngine implements Blksnap {
    private static final Logger LOG = LoggerFactory.getLogger(BlksnapEngine.class);
    private static final Pattern DEVICE_NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");

    /** The init steps, in the module's order. */
    static final List<String> STEPS = List.of("diff_io", "images", "trackers", "control", "status");

    private final Params params;
    private final Persistence persistence;
    private final NativeIo nativeIo;
    private final ReentrantLock control = new ReentrantLock();
    private final ConcurrentSkipListMap<String, TrackedDevice> devices = new ConcurrentSkipListMap<>();
    private final LinkedHashMap<UUID, Snapshot> snapshots = new LinkedHashMap<>();
    private final CopyOnWriteArrayList<EngineListener> listeners = new CopyOnWriteArrayList<>();
    /** What snapshots tell of each copy-on-write: every listener hears it. */
    private final EngineListener copyListeners = new EngineListener() {
        @Override
        public void chunkCopied(String device, int bytes, long nanos) {
            for (EngineListener l : listeners) {
                l.chunkCopied(device, bytes, nanos);
            }
        }
    };
    private final Lifecycle lifecycle = new Lifecycle();
    private volatile ImageRegistry images;
    /** The persistent state of trackers; set while the "trackers" step is up. */
    private volatile StateStore state;
    private volatile boolean trackersUp;
    private volatile boolean accepting;
    private volatile boolean statusUp;

    /**
     * @param failAt name of an init step to fail, for tests of the unwind; null in production
     */
    BlksnapEngine(Params params, NativeIo nativeIo, String failAt) {
        this(params, Persistence.NONE, nativeIo, failAt);
    }

    /**
     * @param persistence where trackers are kept ({@link Persistence#NONE}: in memory only)
     * @param failAt      name of an init step to fail, for tests of the unwind; null in production
     */
    BlksnapEngine(Params params, Persistence persistence, NativeIo nativeIo, String failAt) {
        this.params = params;
        this.persistence = persistence;
        this.nativeIo = nativeIo;
        control.lock();
        try {
            lifecycle.bringUp(List.of(
                    step("diff_io", failAt, () -> LOG.debug("native file calls {}", nativeIo.available() ? "available" : "unavailable"),
                            () -> { }),
                    step("images", failAt, () -> images = new ImageRegistry(), () -> images = null),
                    step("trackers", failAt, this::trackersUp, this::trackersDone),
                    step("control", failAt, () -> accepting = true, this::controlDone),
                    step("status", failAt, () -> statusUp = true, () -> statusUp = false)));
        } finally {
            control.unlock();
        }
        LOG.info("blksnap {} up; parameters {}", Version.CURRENT, params.asMap());
    }

    private static Lifecycle.Step step(String name, String failAt, Lifecycle.Action up, Lifecycle.Action down) {
        return new Lifecycle.Step(name, () -> {
            if (name.equals(failAt)) {
                throw new BlksnapException(Errno.ENOMEM, "init step " + name + " failed (injected)");
            }
            up.run();
        }, down);
    }

    /** Which init steps are up, in order (for tests of the unwind). */
    List<String> stepsUp() {
        return lifecycle.stepsUp();
    }

    /** snapshot_done + ctrl_done: refuse control calls, destroy every snapshot (images first). */
    private void controlDone() {
        accepting = false;
        List<Snapshot> all = new ArrayList<>(snapshots.values());
        snapshots.clear();
        FirstFailure failures = new FirstFailure();
        for (Snapshot s : all) {
            failures.run(() -> notifyRemoved(s.destroy(images)));
        }
        failures.throwIfAny(RuntimeException.class, e -> new BlksnapException(Errno.EIO, e.getMessage(), e));
    }

    /** tracker_init: opens the persistent state (and cleans up after an earlier crash). */
    private void trackersUp() {
        try {
            state = StateStore.open(persistence);
        } catch (IOException e) {
            throw new BlksnapException(Errno.EIO, "state directory " + persistence.directory() + ": " + e.getMessage(), e);
        }
        trackersUp = true;
    }

    /**
     * tracker_done: every tracker is saved (with persistence: exactly, marked clean, with the backing
     * store's identity) and detached, every device closed; then the state closes.
     */
    private void trackersDone() throws IOException {
        trackersUp = false;
        FirstFailure failures = new FirstFailure();
        StateStore s = state;
        for (TrackedDevice d : devices.values()) {
            if (s != null) {
                failures.run(() -> s.saveAtExit(d));
            } else {
                d.setTracker(null);
                failures.run(d::close);
            }
        }
        devices.clear();
        if (s != null) {
            failures.run(s::close);
        }
        state = null;
        failures.throwIfAny(IOException.class, e -> new IOException(e.getMessage(), e));
    }

    private void checkAccepting() {
        if (!accepting) {
            throw new BlksnapException(Errno.ESHUTDOWN, "blksnap is shutting down");
        }
    }

    private <T> T locked(Supplier<T> op) {
        control.lock();
        try {
            checkAccepting();
            return op.get();
        } finally {
            control.unlock();
        }
    }

    private void lockedRun(Runnable op) {
        locked(() -> {
            op.run();
            return null;
        });
    }

    @Override
    public Version version() {
        return Version.CURRENT;
    }

    @Override
    public Params params() {
        return params;
    }

    // ---- devices ------------------------------------------------------------------------------

    @Override
    public void addDevice(String name, BlockDevice backing) {
        lockedRun(() -> {
            if (name == null || !DEVICE_NAME.matcher(name).matches() || name.startsWith(ImageRegistry.PREFIX)) {
                throw new BlksnapException(Errno.EINVAL, "device name '" + name + "' must be 1-128 letters, digits, '.', '_'"
                        + " or '-', start with a letter or digit, and not start with " + ImageRegistry.PREFIX);
            }
            if (devices.containsKey(name)) {
                throw new BlksnapException(Errno.EEXIST, "device " + name + " already exists");
            }
            // The reverse of append-storage's rule (a served device's store is no storage without ranges):
            // a snapshot's storage file served as a device would let clients overwrite its copies.
            Path store = backingPath(backing);
            if (store != null) {
                for (Snapshot s : snapshots.values()) {
                    if (s.storageHolds(store)) {
                        throw new BlksnapException(Errno.EBUSY, store + " is difference storage of snapshot " + s.id()
                                + "; it cannot back device " + name + " while the snapshot exists");
                    }
                }
            }
            TrackedDevice d = new TrackedDevice(name, backing);
            // Restored before the device is reachable: a recovered tracker is checkpointed and its
            // journals emptied before the first write can arrive.
            Tracker restored = state.restore(d, params.values());
            if (restored != null) {
                d.setTracker(restored);
            }
            devices.put(name, d);
            LOG.info("device {} added: {} ({} bytes){}", name, backing.name(), backing.sizeBytes(),
                    restored == null ? "" : "; tracker restored, generation " + restored.cbt().generationId()
                            + " (" + restored.cbt().reason() + "), snapshot number " + restored.cbt().snapNumber());
        });
    }

    @Override
    public void removeDevice(String name, boolean force) {
        TrackedDevice removed = locked(() -> {
            TrackedDevice d = existing(name);
            Tracker t = d.tracker();
            if (t != null && t.owner() != null) {
                if (!force) {
                    throw new BlksnapException(Errno.EBUSY, "device " + name + " is in snapshot " + t.owner()
                            + "; destroy it first (or force the removal, which corrupts the snapshot)");
                }
                Snapshot s = snapshots.get(t.owner());
                if (s != null) {
                    s.deviceCorrupted(name, Errno.ENODEV, "device was removed");
                }
            }
            d.markRemoved();
            d.setTracker(null);
            devices.remove(name);
            state.forget(name);
            LOG.info("device {} removed; its tracker is detached", name);
            return d;
        });
        try {
            for (EngineListener l : listeners) {
                try {
                    l.deviceRemoved(name);
                } catch (RuntimeException e) {
                    LOG.warn("listener failed on removal of device {}: {}", name, e.toString());
                }
            }
        } finally {
            // Only after the listeners: a server waits there for its requests in flight, which then finish
            // on an open device instead of failing on a closed one.
            try {
                removed.close();
            } catch (IOException e) {
                LOG.warn("closing removed device {} failed: {}", name, e.toString());
            }
        }
    }

    @Override
    public List<String> deviceNames() {
        return List.copyOf(devices.keySet());
    }

    private TrackedDevice existing(String name) {
        TrackedDevice d = name == null ? null : devices.get(name);
        if (d == null) {
            throw new BlksnapException(Errno.ENXIO, "no device '" + name + "'");
        }
        return d;
    }

    @Override
    public BlockDevice device(String name) {
        return existing(name);
    }

    @Override
    public BlockDevice image(String imageName) {
        ImageRegistry r = images;
        if (r == null) {
            throw new BlksnapException(Errno.ESHUTDOWN, "blksnap is shutting down");
        }
        return r.get(imageName);
    }

    @Override
    public void addListener(EngineListener listener) {
        listeners.add(listener);
    }

    @Override
    public void removeListener(EngineListener listener) {
        listeners.remove(listener);
    }

    /** The file or block device behind {@code backing} when its name is an absolute path, else null. */
    private static Path backingPath(BlockDevice backing) {
        try {
            Path p = Path.of(backing.name());
            return p.isAbsolute() ? p.normalize() : null;
        } catch (java.nio.file.InvalidPathException e) {
            return null;
        }
    }

    @Override
    public boolean isBackingPath(Path path) {
        Path p = path.toAbsolutePath().normalize();
        for (TrackedDevice d : devices.values()) {
            Path b = Path.of(d.backing().name()).toAbsolutePath().normalize();
            try {
                if (b.equals(p) || (Files.exists(p) && Files.exists(b) && Files.isSameFile(b, p))) {
                    return true;
                }
            } catch (IOException e) {
                // not comparable: not the same
            }
        }
        return false;
    }

    // ---- trackers -----------------------------------------------------------------------------

    @Override
    public List<CbtInfo> trackerCollect() {
        List<CbtInfo> out = new ArrayList<>();
        for (TrackedDevice d : devices.values()) {
            Tracker t = d.tracker();
            if (t != null) {
                out.add(t.cbt().info());
            }
        }
        return out;
    }

    @Override
    public CbtInfo cbtInfo(String device) {
        return trackerOf(existing(device), Errno.ENODATA).cbt().info();
    }

    private static Tracker trackerOf(TrackedDevice d, Errno ifNone) {
        Tracker t = d.tracker();
        if (t == null) {
            throw new BlksnapException(ifNone, "device " + d.name() + " has no tracker (it was never in a snapshot,"
                    + " or its tracker was removed)");
        }
        return t;
    }

    @Override
    public byte[] trackerReadCbtMap(String device, long offsetBlocks, int lengthBlocks) {
        control.lock();
        Tracker t;
        try {
            checkAccepting();
            t = trackerOf(existing(device), Errno.ENODATA);
            Snapshot s = t.owner() == null ? null : snapshots.get(t.owner());
            if (s == null || s.state() != Snapshot.State.TAKEN) {
                throw new BlksnapException(Errno.EPERM, "device " + device + " is not in a taken snapshot;"
                        + " the CBT map can be read only while a snapshot is held");
            }
        } finally {
            control.unlock();
        }
        return t.cbt().readMap(offsetBlocks, lengthBlocks);
    }

    @Override
    public void trackerMarkDirty(String deviceOrImage, List<SectorRange> ranges) {
        lockedRun(() -> {
            TrackedDevice d;
            if (deviceOrImage != null && deviceOrImage.startsWith(ImageRegistry.PREFIX)) {
                String device = images.deviceOf(deviceOrImage);
                d = devices.get(device);
                if (d == null) {
                    throw new BlksnapException(Errno.ENODEV, "device of image " + deviceOrImage + " was removed");
                }
            } else {
                d = devices.get(deviceOrImage);
                if (d == null) {
                    throw new BlksnapException(Errno.ENODEV, "no device or image '" + deviceOrImage + "'");
                }
            }
            try {
                trackerOf(d, Errno.ENODEV).cbt().markBoth(ranges);
            } finally {
                // The marks changed the maps outside the write path (ranges before a bad one stay
                // marked): only a checkpoint makes them survive a crash.
                state.checkpoint(d.name());
            }
        });
    }

    @Override
    public void trackerRemove(String device) {
        lockedRun(() -> {
            TrackedDevice d = existing(device);
            Tracker t = trackerOf(d, Errno.ENODATA);
            if (t.owner() != null) {
                throw new BlksnapException(Errno.EBUSY, "device " + device + " is in snapshot " + t.owner()
                        + "; destroy it first");
            }
            d.setTracker(null);
            state.forget(device);
            LOG.info("tracker of {} removed; its CBT history is gone", device);
        });
    }

    // ---- snapshots ----------------------------------------------------------------------------

    @Override
    public UUID snapshotCreate(List<String> names) {
        return locked(() -> {
            if (names == null || names.isEmpty()) {
                throw new BlksnapException(Errno.EINVAL, "a snapshot needs at least one device");
            }
            Set<String> seen = new HashSet<>();
            List<TrackedDevice> list = new ArrayList<>();
            for (String n : names) {
                if (!seen.add(n)) {
                    throw new BlksnapException(Errno.EINVAL, "device " + n + " is listed twice");
                }
                TrackedDevice d = existing(n);
                Tracker t = d.tracker();
                if (t != null && t.owner() != null) {
                    throw new BlksnapException(Errno.EBUSY, "device " + n + " is already in snapshot " + t.owner());
                }
                list.add(d);
            }
            UUID id = UUID.randomUUID();
            ParamValues values = params.values();
            for (TrackedDevice d : list) {
                if (d.tracker() == null) {
                    d.setTracker(state.attachNew(d, values));
                    LOG.info("tracker attached to {}", d.name());
                }
                d.tracker().setOwner(id);
            }
            Snapshot snapshot = new Snapshot(id, list, params, nativeIo, state, copyListeners);
            snapshots.put(id, snapshot);
            for (TrackedDevice d : list) {
                Tracker t = d.tracker();
                if (t.resetUnreported()) {
                    CbtMap m = t.cbt();
                    snapshot.events().post(new SnapshotEvent.GenerationReset(System.nanoTime(), d.name(),
                            m.generationId(), m.reason(), m.reasonDetail()));
                    t.setResetUnreported(false);
                }
            }
            LOG.info("snapshot {} created over {}", id, names);
            return id;
        });
    }

    private Snapshot snapshot(UUID id, Errno ifUnknown) {
        Snapshot s = id == null ? null : snapshots.get(id);
        if (s == null) {
            throw new BlksnapException(ifUnknown, "no snapshot " + id);
        }
        return s;
    }

    @Override
    public void snapshotAppendStorage(UUID id, StorageSpec storage) {
        Snapshot s = locked(() -> snapshot(id, Errno.ESRCH));
        // Creating and preallocating a file may take a while: not under the control lock.
        s.appendStorage(storage, this::isBackingPath);
    }

    @Override
    public void snapshotTake(UUID id, TakeHooks hooks) {
        List<ImageInfo> created = locked(() -> {
            Snapshot s = snapshot(id, Errno.ESRCH);
            try {
                return s.take(hooks == null ? TakeHooks.NONE : hooks, images);
            } catch (BlksnapException e) {
                if (e.errno() == Errno.EFAULT) {
                    snapshots.remove(id);
                    s.destroy(images);
                }
                throw e;
            }
        });
        for (ImageInfo img : created) {
            for (EngineListener l : listeners) {
                l.imageCreated(img);
            }
        }
    }

    @Override
    public List<UUID> snapshotCollect() {
        return locked(() -> List.copyOf(snapshots.keySet()));
    }

    @Override
    public List<ImageInfo> snapshotCollectImages(UUID id) {
        return locked(() -> {
            Snapshot s = snapshot(id, Errno.ESRCH);
            if (s.state() != Snapshot.State.TAKEN) {
                throw new BlksnapException(Errno.ENODEV, "snapshot " + id + " is not taken yet");
            }
            return s.images();
        });
    }

    @Override
    public SnapshotEvent snapshotWaitEvent(UUID id, long timeoutMillis) {
        Snapshot s = locked(() -> snapshot(id, Errno.ESRCH));
        return s.events().take(timeoutMillis);
    }

    @Override
    public void snapshotDestroy(UUID id) {
        List<ImageInfo> removed = locked(() -> {
            Snapshot s = snapshot(id, Errno.ENODEV);
            snapshots.remove(id);
            return s.destroy(images);
        });
        notifyRemoved(removed);
    }

    private void notifyRemoved(List<ImageInfo> removed) {
        for (ImageInfo img : removed) {
            for (EngineListener l : listeners) {
                try {
                    l.imageRemoved(img);
                } catch (RuntimeException e) {
                    LOG.warn("listener failed on removal of {}: {}", img.image(), e.toString());
                }
            }
        }
    }

    // ---- status -------------------------------------------------------------------------------

    @Override
    public Status status() {
        control.lock();
        try {
            if (!statusUp) {
                throw new BlksnapException(Errno.ESHUTDOWN, "blksnap is shutting down");
            }
            List<Status.DeviceStatus> ds = new ArrayList<>();
            for (TrackedDevice d : devices.values()) {
                Tracker t = d.tracker();
                ds.add(new Status.DeviceStatus(d.name(), d.sizeBytes(), t == null ? null : t.cbt().info(),
                        t == null ? null : t.owner()));
            }
            List<Status.SnapshotStatus> ss = snapshots.values().stream().map(Snapshot::status).toList();
            return new Status(Version.CURRENT.toString(), params.asMap(), ds, ss);
        } finally {
            control.unlock();
        }
    }


    @Override
    public void close() {
        RuntimeException failure;
        control.lock();
        try {
            failure = lifecycle.tearDown();
        } finally {
            control.unlock();
        }
        LOG.info("blksnap down");
        if (failure != null) {
            throw failure;
        }
    }
}
