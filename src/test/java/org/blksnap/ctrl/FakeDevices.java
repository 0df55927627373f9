package org.blksnap.ctrl;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.CopyOnWriteArrayList;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;

/**
 * A stand-in for the daemon's side of the device operations in transport and CLI tests: records
 * every call and keeps a table of names, nothing more (the real one, with backing stores and the
 * registry, is tested through the daemon). disk0 and disk1 are "declared", as in {@link FakeBlksnap}.
 */
public final class FakeDevices implements DeviceAdmin {
    public final List<String> calls = new CopyOnWriteArrayList<>();
    private final ConcurrentSkipListMap<String, Entry> entries = new ConcurrentSkipListMap<>();

    public FakeDevices() {
        entries.put("disk0", new Entry("disk0", Path.of("/fake/disk0.img"), Origin.FLAG, 1L << 30, null));
        entries.put("disk1", new Entry("disk1", Path.of("/fake/disk1.img"), Origin.FLAG, 64L << 20, null));
        entries.put("gone", new Entry("gone", Path.of("/fake/gone.img"), Origin.ADDED, 0,
                "ENOENT: backing file /fake/gone.img of device gone does not exist"));
    }

    @Override
    public Entry add(String name, Path path, long createSizeBytes, boolean readOnly) {
        calls.add("add " + name + " " + path + " " + createSizeBytes);
        Entry e = new Entry(name, path, Origin.ADDED, createSizeBytes, null, readOnly);
        if (entries.putIfAbsent(name, e) != null) {
            throw new BlksnapException(Errno.EEXIST, "device " + name + " already exists");
        }
        return e;
    }

    @Override
    public void remove(String name, boolean force) {
        calls.add("remove " + name + (force ? " force" : ""));
        if (entries.remove(name) == null) {
            throw new BlksnapException(Errno.ENXIO, "no device '" + name + "'");
        }
    }

    @Override
    public List<Entry> entries() {
        return List.copyOf(entries.values());
    }
}
