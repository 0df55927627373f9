package org.blksnap.engine.snapshot;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Predicate;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.EngineListener;
import org.blksnap.engine.Errno;
import org.blksnap.engine.GenerationReason;
import org.blksnap.engine.ImageInfo;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Params;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Status;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.NativeIo;
import org.blksnap.engine.diff.DiffArea;
import org.blksnap.engine.diff.DiffStorage;
import org.blksnap.engine.event.EventQueue;
import org.blksnap.engine.state.StateStore;
import org.blksnap.engine.tracker.CbtMap;
import org.blksnap.engine.tracker.TrackedDevice;
import org.blksnap.engine.tracker.Tracker;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A snapshot of one or more devices: created, then taken at one point in time across all of them,
 * then destroyed. Owns the difference storage and the event queue; at take, one diff area and one
 * image per device.
 *
 * <p>Thread-safety: lifecycle calls ({@link #take}, {@link #destroy}) are serialised by the engine's
 * control lock; {@link #appendStorage}, corruption reports and the read-only accessors may come from
 * any thread.
 */
public final class Snapshot implements DiffArea.Owner {
    private static final Logger LOG = LoggerFactory.getLogger(Snapshot.class);

    /** Lifecycle state. */
    public enum State { CREATED, TAKEN, DESTROYED }

    private final UUID id;
    private final List<TrackedDevice> devices;
    private final Params params;
    private final StateStore store;
    private final EventQueue events;
    private final DiffStorage storage;
    private final List<DiffArea> areas = new ArrayList<>();
    private final List<SnapImage> images = new ArrayList<>();
    private final Set<String> corruptedDevices = new HashSet<>();
    private final EngineListener listener;
    private final long createdAtMillis = System.currentTimeMillis();
    private volatile long takenAtMillis;
    private volatile State state = State.CREATED;
    private volatile Errno corruption;
    /** Guards the lists and the corrupted set; held only briefly, never around I/O or call-outs. */
    private final ReentrantLock guard = new ReentrantLock();

    /**
     * Creates the snapshot of devices whose trackers are already attached and owned by it.
     * Queues the first low_free_space event.
     *
     * @param listener told of each copy-on-write ({@link EngineListener#chunkCopied})
     */
    public Snapshot(UUID id, List<TrackedDevice> devices, Params params, NativeIo nativeIo, StateStore store,
                    EngineListener listener) {
        this.id = id;
        this.listener = listener;
        this.devices = List.copyOf(devices);
        this.params = params;
        this.store = store;
        this.events = new EventQueue(id.toString());
        this.storage = new DiffStorage(id.toString(), events, params.values().diffStorageMinimum(), nativeIo,
                store.storageLedger());
    }

    public UUID id() {
        return id;
    }

    public State state() {
        return state;
    }

    public List<String> deviceNames() {
        return devices.stream().map(TrackedDevice::name).toList();
    }

    public List<TrackedDevice> devices() {
        return devices;
    }


    public EventQueue events() {
        return events;
    }

    /** Images in device order; empty before take. */
    public List<ImageInfo> images() {
        guard.lock();
        try {
            return images.stream().map(SnapImage::info).toList();
        } finally {
            guard.unlock();
        }
    }

    /** What the status view shows of this snapshot. */
    public Status.SnapshotStatus status() {
        List<DiffArea> taken;
        guard.lock();
        try {
            taken = List.copyOf(areas);
        } finally {
            guard.unlock();
        }
        Errno c = corruption;
        String stateName = c != null ? "corrupted" : state.name().toLowerCase(Locale.ROOT);
        long copied = taken.stream().mapToLong(DiffArea::chunksCopied).sum();
        return new Status.SnapshotStatus(id, stateName, deviceNames(), images(), storage.capacitySectors(),
                storage.filledSectors(), storage.requestedSectors(), copied, events.pending(), c == null ? 0 : c.number(),
                createdAtMillis, takenAtMillis);
    }

    @Override
    public void chunkCopied(String device, int bytes, long nanos) {
        listener.chunkCopied(device, bytes, nanos);
    }

    @Override
    public Errno corruption() {
        return corruption;
    }

    @Override
    public void deviceCorrupted(String device, Errno errno, String message) {
        boolean first;
        guard.lock();
        try {
            first = corruptedDevices.add(device);
            if (corruption == null) {
                corruption = errno;
            }
        } finally {
            guard.unlock();
        }
        if (first) {
            events.post(new SnapshotEvent.Corrupted(System.nanoTime(), device, errno.number()));
            LOG.warn("snapshot {}: device {} corrupted ({}): {}", id, device, errno, message);
        }
    }

    /** Appends difference storage; see {@link DiffStorage#append}. */
    /** Whether {@code path} is a file of this snapshot's difference storage (see {@link DiffStorage#holdsFile}). */
    public boolean storageHolds(Path path) {
        return storage.holdsFile(path);
    }

    public void appendStorage(StorageSpec spec, Predicate<Path> isBackingStore) {
        if (state == State.DESTROYED) {
            throw new BlksnapException(Errno.ESRCH, "snapshot " + id + " was destroyed");
        }
        storage.append(spec, isBackingStore);
    }

    /**
     * Takes the snapshot: diff areas are prepared, the freeze hook runs, the barriers of all devices
     * close (in name order, so that takes cannot deadlock), CBT maps switch (reset first if corrupted or
     * resized) and copy-on-write starts on all devices at one point, the barriers open, the thaw hook
     * runs, the trackers' checkpoints of the take are durable, and the images appear.
     *
     * <p>With persistence, the epoch switch and the copy of the maps happen with the barriers closed
     * right after the switch, and the copies are durable before the images are registered and the
     * take returns: a crash can then never bring back the numbers from before a take that a backup
     * tool has seen (which would under-report the writes after it).
     *
     * @throws BlksnapException EALREADY taken; ENODEV no devices; EFAULT no storage appended, or the
     *                          snapshot is corrupted (a device was removed) (the caller destroys the
     *                          snapshot, as v1); EIO if the freeze hook failed
     */
    public List<ImageInfo> take(TakeHooks hooks, ImageRegistry registry) {
        if (state == State.TAKEN) {
            throw new BlksnapException(Errno.EALREADY, "snapshot " + id + " is already taken");
        }
        if (state == State.DESTROYED) {
            throw new BlksnapException(Errno.ESRCH, "snapshot " + id + " was destroyed");
        }
        if (devices.isEmpty()) {
            throw new BlksnapException(Errno.ENODEV, "snapshot " + id + " has no devices");
        }
        if (storage.capacitySectors() == 0) {
            throw new BlksnapException(Errno.EFAULT, "snapshot " + id + " has no difference storage appended"
                    + " (in-memory difference storage is not supported)");
        }
        if (corruption != null) {
            // A member was removed (or failed) before take: its tracker is gone. As v1 does for a diff
            // area corrupted at take, refuse with EFAULT; the caller releases the snapshot.
            throw new BlksnapException(Errno.EFAULT, "snapshot " + id + " is corrupted (" + corruption
                    + "): a device was removed before take");
        }
        ParamValues values = params.values();
        List<DiffArea> prepared = new ArrayList<>();
        for (TrackedDevice d : devices) {
            prepared.add(new DiffArea(d.name(), d.backing(), values, params, storage, this));
        }
        long t0;
        long heldNanos = 0;
        try (StateStore.Take checkpoints = store.beginTake(devices)) {
            try {
                hooks.beforeBarrier();
            } catch (Exception e) {
                runAfter(hooks);
                throw new BlksnapException(Errno.EIO, "snapshot " + id + ": freeze hook failed: " + e.getMessage(), e);
            }
            t0 = System.nanoTime();
            try {
                withBarriersClosed(() -> {
                    for (int i = 0; i < devices.size(); i++) {
                        TrackedDevice d = devices.get(i);
                        Tracker t = d.tracker();
                        CbtMap old = t.cbt();
                        if (old.needsReset(d.sizeBytes())) {
                            GenerationReason why = old.isCorrupted() ? GenerationReason.MAP_CORRUPTED
                                    : GenerationReason.SIZE_CHANGED;
                            String detail = old.isCorrupted() ? "a write fell outside the map of " + old.blockCount()
                                    + " blocks" : "the map was built for " + old.capacityBytes() + " bytes; the device has "
                                    + d.sizeBytes() + " bytes";
                            LOG.warn("{}: CBT map reset at take ({}: {}); a new generation starts", d.name(), why, detail);
                            t.replaceCbt(CbtMap.create(d.name(), d.sizeBytes(), values, why, detail));
                        }
                        boolean wrapped = t.cbt().switchAtTake();
                        if (t.cbt() != old || wrapped) {
                            CbtMap m = t.cbt();
                            if (wrapped) {
                                LOG.warn("{}: snapshot numbers wrapped; a new generation starts", d.name());
                            }
                            events.post(new SnapshotEvent.GenerationReset(System.nanoTime(), d.name(), m.generationId(),
                                    m.reason(), m.reasonDetail()));
                        }
                        checkpoints.switched(d);
                        t.setDiffArea(prepared.get(i));
                    }
                    guard.lock();
                    try {
                        areas.addAll(prepared);
                    } finally {
                        guard.unlock();
                    }
                    takenAtMillis = System.currentTimeMillis();
                    state = State.TAKEN;
                });
                heldNanos = System.nanoTime() - t0;
            } finally {
                runAfter(hooks);
                // Also if the switch failed halfway: the maps that did switch must not come back older.
                checkpoints.commit();
            }
        }
        LOG.info("snapshot {} taken over {} ({} µs with writes held; {} µs with the thaw and the checkpoints)", id,
                deviceNames(), heldNanos / 1000, (System.nanoTime() - t0) / 1000);
        List<SnapImage> created = new ArrayList<>();
        for (int i = 0; i < devices.size(); i++) {
            TrackedDevice d = devices.get(i);
            int n = registry.allocateNumber();
            ImageInfo info = new ImageInfo(d.name(), ImageRegistry.PREFIX + n, id, d.sizeBytes());
            SnapImage img = new SnapImage(info, prepared.get(i), d.tracker(), d.logicalBlockSize());
            registry.register(n, img);
            created.add(img);
        }
        guard.lock();
        try {
            images.addAll(created);
        } finally {
            guard.unlock();
        }
        return created.stream().map(SnapImage::info).toList();
    }

    /**
     * Runs {@code inside} with the barriers of all the snapshot's devices closed: closed in name
     * order (so that two takes cannot deadlock), opened in reverse, also when {@code inside} throws.
     */
    private void withBarriersClosed(Runnable inside) {
        List<TrackedDevice> order = new ArrayList<>(devices);
        order.sort(Comparator.comparing(TrackedDevice::name));
        long[] stamps = new long[order.size()];
        try {
            for (int i = 0; i < order.size(); i++) {
                stamps[i] = order.get(i).closeBarrier();
            }
            inside.run();
        } finally {
            for (int i = order.size() - 1; i >= 0; i--) {
                if (stamps[i] != 0) {
                    order.get(i).openBarrier(stamps[i]);
                }
            }
        }
    }

    private void runAfter(TakeHooks hooks) {
        try {
            hooks.afterBarrier();
        } catch (Exception e) {
            LOG.error("snapshot {}: thaw hook failed: {}", id, e.toString());
        }
    }

    /**
     * Destroys: wakes event waiters, removes the images, stops copy-on-write on every device (barrier
     * closed), releases the diff areas and the storage. Trackers stay attached. Never touches the
     * content of the originals or of the storage files.
     *
     * @return the images removed
     */
    public List<ImageInfo> destroy(ImageRegistry registry) {
        if (state == State.DESTROYED) {
            return List.of();
        }
        state = State.DESTROYED;
        events.close();
        List<SnapImage> removed;
        guard.lock();
        try {
            removed = List.copyOf(images);
            images.clear();
        } finally {
            guard.unlock();
        }
        for (SnapImage img : removed) {
            img.markRemoved();
            registry.release(ImageRegistry.numberOf(img.name()));
        }
        withBarriersClosed(() -> {
            for (TrackedDevice d : devices) {
                Tracker t = d.tracker();
                if (t != null) {
                    t.setDiffArea(null);
                    if (id.equals(t.owner())) {
                        t.setOwner(null);
                    }
                }
            }
        });
        List<DiffArea> toClose;
        guard.lock();
        try {
            toClose = List.copyOf(areas);
            areas.clear();
        } finally {
            guard.unlock();
        }
        toClose.forEach(DiffArea::close);
        storage.close();
        LOG.info("snapshot {} destroyed", id);
        return removed.stream().map(SnapImage::info).toList();
    }

    /** Flushes the difference storage. */
    void force() throws IOException {
        storage.force();
    }
}
