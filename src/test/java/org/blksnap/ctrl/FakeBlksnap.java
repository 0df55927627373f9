package org.blksnap.ctrl;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.TimeUnit;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.CbtInfo;
import org.blksnap.engine.EngineListener;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ImageInfo;
import org.blksnap.engine.Params;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Status;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.Version;

/**
 * A stand-in engine for transport and CLI tests: keeps just enough state to answer like the real
 * one (errors by name), and records every call. Not a model of the engine's semantics.
 */
public final class FakeBlksnap implements Blksnap {
    public final List<String> calls = new CopyOnWriteArrayList<>();
    public final List<StorageSpec> appended = new CopyOnWriteArrayList<>();
    /** Room left on the filesystem of created storage files: a larger create fails with ENOSPC. */
    public volatile long roomBytes = Long.MAX_VALUE;
    /**
     * If >= 0, {@link #roomBytes} becomes this at the next wait-event: room that appears while the
     * caller waits, never in the middle of its appends.
     */
    public volatile long roomAtNextWait = -1;
    public final Params params = new Params();
    /** Blocks in the fake CBT map of each device. */
    public int mapBlocks = 3 * (1 << 20) + 17;
    private final Map<String, Long> devices = new LinkedHashMap<>(Map.of("disk0", 1L << 30, "disk1", 64L << 20));
    private final Map<UUID, List<String>> snapshots = Collections.synchronizedMap(new LinkedHashMap<>());
    private final Map<UUID, LinkedBlockingDeque<SnapshotEvent>> events = new java.util.concurrent.ConcurrentHashMap<>();
    private final java.util.Set<UUID> taken = Collections.synchronizedSet(new HashSet<>());
    private final UUID generation = UUID.randomUUID();

    /** Queues an event for a snapshot. */
    public void queue(UUID id, SnapshotEvent ev) {
        events.get(id).add(ev);
    }

    /** Events of a snapshot queued and not yet taken by a wait-event. */
    public int pendingEvents(UUID id) {
        return events.get(id).size();
    }

    /** How many append-storage calls named a file of that name (whether they worked or not). */
    public long appendAttempts(String fileName) {
        return calls.stream().filter(c -> c.startsWith("appendStorage ") && c.contains("/" + fileName + " ")).count();
    }

    @Override
    public Version version() {
        return Version.CURRENT;
    }

    @Override
    public Params params() {
        return params;
    }

    @Override
    public void addDevice(String name, BlockDevice backing) {
        throw new UnsupportedOperationException();
    }

    @Override
    public void removeDevice(String name, boolean force) {
        throw new UnsupportedOperationException();
    }

    @Override
    public List<String> deviceNames() {
        return new ArrayList<>(devices.keySet());
    }

    @Override
    public BlockDevice device(String name) {
        throw new BlksnapException(Errno.ENXIO, "no device " + name);
    }

    @Override
    public BlockDevice image(String imageName) {
        throw new BlksnapException(Errno.ENODEV, "no image " + imageName);
    }

    @Override
    public void addListener(EngineListener listener) {
    }

    @Override
    public void removeListener(EngineListener listener) {
    }

    @Override
    public List<CbtInfo> trackerCollect() {
        calls.add("trackerCollect");
        return devices.entrySet().stream()
                .map(e -> new CbtInfo(e.getKey(), 65536, e.getValue(), mapBlocks, generation, 1)).toList();
    }

    @Override
    public CbtInfo cbtInfo(String device) {
        return trackerCollect().stream().filter(c -> c.device().equals(device)).findFirst()
                .orElseThrow(() -> new BlksnapException(Errno.ENXIO, "no device " + device));
    }

    @Override
    public byte[] trackerReadCbtMap(String device, long offsetBlocks, int lengthBlocks) {
        calls.add("readCbtMap " + device + " " + offsetBlocks + " " + lengthBlocks);
        if (!devices.containsKey(device)) {
            throw new BlksnapException(Errno.ENXIO, "no device " + device);
        }
        if (offsetBlocks > mapBlocks) {
            throw new BlksnapException(Errno.ENODATA, "offset past the map");
        }
        int n = (int) Math.min(lengthBlocks, mapBlocks - offsetBlocks);
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) ((offsetBlocks + i) % 251);
        }
        return b;
    }

    @Override
    public void trackerMarkDirty(String deviceOrImage, List<SectorRange> ranges) {
        calls.add("markDirty " + deviceOrImage + " " + ranges);
        if (!devices.containsKey(deviceOrImage)) {
            throw new BlksnapException(Errno.ENODEV, "no device or image " + deviceOrImage);
        }
    }

    @Override
    public void trackerRemove(String device) {
        calls.add("trackerRemove " + device);
        if (!devices.containsKey(device)) {
            throw new BlksnapException(Errno.ENXIO, "no device " + device);
        }
    }

    @Override
    public UUID snapshotCreate(List<String> devs) {
        calls.add("snapshotCreate " + devs);
        if (new HashSet<>(devs).size() != devs.size()) {
            throw new BlksnapException(Errno.EINVAL, "duplicate device in " + devs);
        }
        for (String d : devs) {
            if (!devices.containsKey(d)) {
                throw new BlksnapException(Errno.ENXIO, "no device " + d);
            }
        }
        UUID id = UUID.randomUUID();
        snapshots.put(id, List.copyOf(devs));
        events.put(id, new LinkedBlockingDeque<>());
        queue(id, new SnapshotEvent.LowFreeSpace(System.nanoTime(), params.get("diff_storage_minimum")));
        return id;
    }

    private void known(UUID id, Errno errno) {
        if (!snapshots.containsKey(id)) {
            throw new BlksnapException(errno, "no snapshot " + id);
        }
    }

    @Override
    public void snapshotAppendStorage(UUID id, StorageSpec storage) {
        calls.add("appendStorage " + id + " " + storage.path() + " " + storage.createSizeBytes());
        known(id, Errno.ESRCH);
        if (storage.createSizeBytes() > roomBytes) {
            throw new BlksnapException(Errno.ENOSPC, "cannot preallocate " + storage.createSizeBytes()
                    + " bytes for storage " + storage.path() + ": errno 28");
        }
        roomBytes -= storage.createSizeBytes();
        appended.add(storage);
    }

    @Override
    public void snapshotTake(UUID id, TakeHooks hooks) {
        calls.add("take " + id);
        known(id, Errno.ESRCH);
        if (!taken.add(id)) {
            throw new BlksnapException(Errno.EALREADY, "snapshot " + id + " is already taken");
        }
        try {
            try {
                hooks.beforeBarrier();
            } finally {
                hooks.afterBarrier();
            }
        } catch (BlksnapException e) {
            taken.remove(id);
            throw e;
        } catch (Exception e) {
            taken.remove(id);
            throw new BlksnapException(Errno.EIO, "hook failed: " + e.getMessage(), e);
        }
    }

    @Override
    public List<UUID> snapshotCollect() {
        synchronized (snapshots) {
            return new ArrayList<>(snapshots.keySet());
        }
    }

    @Override
    public List<ImageInfo> snapshotCollectImages(UUID id) {
        known(id, Errno.ESRCH);
        if (!taken.contains(id)) {
            throw new BlksnapException(Errno.ENODEV, "snapshot " + id + " is not taken");
        }
        List<ImageInfo> out = new ArrayList<>();
        int n = 0;
        for (String d : snapshots.get(id)) {
            out.add(new ImageInfo(d, "blksnap-image" + n++, id, devices.get(d)));
        }
        return out;
    }

    @Override
    public SnapshotEvent snapshotWaitEvent(UUID id, long timeoutMillis) {
        known(id, Errno.ESRCH);
        if (roomAtNextWait >= 0) {
            roomBytes = roomAtNextWait;
            roomAtNextWait = -1;
        }
        LinkedBlockingDeque<SnapshotEvent> q = events.get(id);
        try {
            SnapshotEvent ev = q.poll(timeoutMillis, TimeUnit.MILLISECONDS);
            if (ev == null) {
                throw new BlksnapException(Errno.ENOENT, "no event in " + timeoutMillis + " ms");
            }
            if (ev instanceof SnapshotEvent.Corrupted c && c.device().equals("__destroyed__")) {
                throw new BlksnapException(Errno.ESRCH, "snapshot " + id + " was destroyed");
            }
            return ev;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new BlksnapException(Errno.EINTR, "interrupted");
        }
    }

    @Override
    public void snapshotDestroy(UUID id) {
        calls.add("destroy " + id);
        known(id, Errno.ENODEV);
        snapshots.remove(id);
        taken.remove(id);
        LinkedBlockingDeque<SnapshotEvent> q = events.remove(id);
        // Waiters blocked in poll see ESRCH on their next call; poke them with a corrupted marker.
        if (q != null) {
            q.add(new SnapshotEvent.Corrupted(System.nanoTime(), "__destroyed__", 0));
        }
    }

    @Override
    public Status status() {
        List<Status.DeviceStatus> ds = new ArrayList<>();
        devices.forEach((n, s) -> ds.add(new Status.DeviceStatus(n, s, null, null)));
        return new Status(Version.CURRENT.toString(), params.asMap(), ds, List.of());
    }

    @Override
    public void close() {
    }

    @Override
    public boolean isBackingPath(Path path) {
        return false;
    }
}
