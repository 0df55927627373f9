package org.blksnap.daemon;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.locks.ReentrantLock;
import org.blksnap.ctrl.DeviceAdmin;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The devices of a running daemon: those declared for this run (flags, config file, or the default
 * disk0) and those added at run time, which are kept in the registry ({@link DeviceRegistry}) and
 * served again after a restart.
 *
 * <p>At start ({@link #start}) the two are merged:
 * <ul>
 *   <li>declared devices are served and never written into the registry;</li>
 *   <li>a registered device whose name is also declared with the same backing store is served once
 *       (as declared) and stays registered; with another store it is a startup error naming both
 *       stores and how to resolve it, except for the default disk0, which then gives way to the
 *       registered one (the default is no declaration);</li>
 *   <li>two devices backed by one store are a startup error;</li>
 *   <li>a declared device that cannot be opened stops the start, as a flag always did; a registered
 *       one is skipped with a warning and stays registered (so a disk that is late at boot is served
 *       at the next start; it is never re-created empty, which would serve zeros in place of lost
 *       data); {@code device list} shows it as unavailable and {@code device remove} drops it.</li>
 * </ul>
 *
 * <p>Thread-safe: adds and removes are serialised by one lock (they touch the engine, the registry
 * file and the table of devices together); {@link #entries()} reads a concurrent map.
 */
final class DeviceManager implements DeviceAdmin {
    private static final Logger LOG = LoggerFactory.getLogger(DeviceManager.class);

    private final Blksnap engine;
    private final DeviceRegistry registry;
    private final ReentrantLock lock = new ReentrantLock();
    /** Every device known, served or unavailable, by name; written under {@link #lock}. */
    private final ConcurrentSkipListMap<String, Entry> known = new ConcurrentSkipListMap<>();
    /** The registry's content as last written, in the order added; under {@link #lock}. */
    private final LinkedHashMap<String, DeviceRegistry.Entry> registered = new LinkedHashMap<>();

    @Override
    public void checkStorage(Path storage) {
        SelfHostedStorage.check(engine, storage);
    }

    private DeviceManager(Blksnap engine, DeviceRegistry registry) {
        this.engine = engine;
        this.registry = registry;
    }

    /**
     * Reads the registry, merges it with the declared devices, opens them and adds them to the engine.
     *
     * @throws DeviceRegistry.CorruptException the registry cannot be read (nothing is opened)
     * @throws BlksnapException                EINVAL a declared device conflicts with a registered one, or
     *                                         two devices share a store (nothing is opened); a declared
     *                                         device cannot be opened or added (the engine's errno)
     */
    static DeviceManager start(Blksnap engine, Path dataDir, List<DeviceSpec> declared) throws IOException {
        DeviceRegistry registry = new DeviceRegistry(dataDir);
        DeviceManager m = new DeviceManager(engine, registry);
        List<DeviceRegistry.Entry> stored = registry.load();
        Map<String, DeviceRegistry.Entry> storedByName = new LinkedHashMap<>();
        for (DeviceRegistry.Entry e : stored) {
            storedByName.put(e.name(), e);
            m.registered.put(e.name(), e);
        }
        List<DeviceSpec> serve = new ArrayList<>();
        for (DeviceSpec d : declared) {
            DeviceRegistry.Entry r = storedByName.get(d.name());
            if (r != null && !samePath(r.path(), d.path())) {
                if (d.origin() == Origin.DEFAULT) {
                    LOG.info("the default device {} ({}) is not served: {} holds a device of that name added at run"
                            + " time, at {}", d.name(), d.path(), registry.file(), r.path());
                    continue;
                }
                throw new BlksnapException(Errno.EINVAL, "device " + d.name() + ": " + declaredBy(d) + " gives "
                        + d.path() + ", but it was added at run time with " + r.path() + " (kept in " + registry.file()
                        + "). Either give the declared one another name, or start without it and run 'blksnap device"
                        + " remove " + d.name() + "' to drop the one added at run time");
            }
            serve.add(d);
        }
        for (DeviceRegistry.Entry r : stored) {
            if (serve.stream().noneMatch(d -> d.name().equals(r.name()))) {
                // Opened at its own size: a size recorded is never used to re-create a missing store.
                serve.add(new DeviceSpec(r.name(), r.path(), 0, Origin.ADDED, r.readOnly()));
            }
        }
        for (int i = 0; i < serve.size(); i++) {
            for (int j = i + 1; j < serve.size(); j++) {
                DeviceSpec a = serve.get(i);
                DeviceSpec b = serve.get(j);
                if (samePath(a.path(), b.path())) {
                    throw new BlksnapException(Errno.EINVAL, "devices " + a.name() + " (" + declaredBy(a) + ") and "
                            + b.name() + " (" + declaredBy(b) + ") are both backed by " + a.path()
                            + "; a store can back one device only (writes through one would escape the other's"
                            + " change tracking)");
                }
            }
        }
        for (DeviceSpec d : serve) {
            m.startOne(d);
        }
        return m;
    }

    private void startOne(DeviceSpec d) {
        BackingStores.Opened opened;
        try {
            opened = BackingStores.open(d.name(), d.path(), d.sizeBytes(), d.origin() != Origin.ADDED);
        } catch (BlksnapException e) {
            if (d.origin() != Origin.ADDED) {
                throw e;
            }
            LOG.warn("DEVICE {} IS NOT SERVED: it was added at run time with {} ({} bytes), which cannot be opened now:"
                    + " {}. It stays registered in {} and is served again at a start where it can be opened; drop it"
                    + " with 'blksnap device remove {}'", d.name(), d.path(), registered.get(d.name()).sizeBytes(),
                    e.getMessage(), registry.file(), d.name());
            known.put(d.name(), new Entry(d.name(), d.path(), d.origin(), 0, e.errno() + ": " + e.getMessage(),
                    d.readOnly()));
            return;
        }
        try {
            engine.addDevice(d.name(), opened.device());
        } catch (RuntimeException e) {
            closeQuietly(opened.device());
            deleteCreated(opened, d.path(), e);
            throw e;
        }
        known.put(d.name(), new Entry(d.name(), d.path(), d.origin(), opened.device().sizeBytes(), null, d.readOnly()));
        LOG.info("device {}: {} ({} bytes{}{}; {})", d.name(), d.path(), opened.device().sizeBytes(),
                opened.created() ? ", created" : "", d.readOnly() ? ", read-only" : "", declaredBy(d));
    }

    @Override
    public Entry add(String name, Path path, long createSizeBytes, boolean readOnly) {
        Path store = path.toAbsolutePath().normalize();
        lock.lock();
        try {
            Entry existing = known.get(name);
            if (existing != null && existing.unavailable() != null) {
                throw new BlksnapException(Errno.EEXIST, "device " + name + " is registered with " + existing.path()
                        + " but not served (" + existing.unavailable() + "); drop it first with 'blksnap device remove "
                        + name + "'");
            }
            // A taken name is the engine's to refuse (EEXIST); a store that backs another device is ours.
            for (Entry e : known.values()) {
                if (!e.name().equals(name) && samePath(e.path(), store)) {
                    throw new BlksnapException(Errno.EBUSY, store + " already backs device " + e.name()
                            + "; a store can back one device only");
                }
            }
            BackingStores.Opened opened = BackingStores.open(name, store, createSizeBytes);
            DeviceRegistry.Entry record = new DeviceRegistry.Entry(name, store, opened.device().sizeBytes(), readOnly);
            // A stale entry of that name (left by a removal whose registry update failed) is replaced.
            List<DeviceRegistry.Entry> next = new ArrayList<>(without(name));
            next.add(record);
            DeviceRegistry.Pending pending = null;
            boolean served = false;
            // Known before the engine serves it, so a concurrent list never shows it without its path and
            // origin (a list shows only what the engine serves); a taken name keeps its own entry.
            Entry entry = new Entry(name, store, Origin.ADDED, opened.device().sizeBytes(), null, readOnly);
            boolean ours = known.putIfAbsent(name, entry) == null;
            try {
                pending = registry.prepare(next);
                engine.addDevice(name, opened.device());
                served = true;
                pending.commit();
            } catch (IOException | RuntimeException e) {
                if (served) {
                    try {
                        engine.removeDevice(name, true);
                    } catch (RuntimeException r) {
                        e.addSuppressed(r);
                    }
                } else {
                    closeQuietly(opened.device());
                }
                if (pending != null) {
                    pending.abort();
                }
                if (ours) {
                    known.remove(name, entry);
                }
                deleteCreated(opened, store, e);
                throw failure(e, "device " + name + " was not added: cannot update " + registry.file());
            }
            registered.remove(name);
            registered.put(name, record);
            LOG.info("device {} added at run time: {} ({} bytes{}{})", name, store, entry.sizeBytes(),
                    opened.created() ? ", created sparse" : "", readOnly ? ", read-only" : "");
            return entry;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void remove(String name, boolean force) {
        lock.lock();
        try {
            Entry entry = known.get(name);
            boolean inRegistry = registered.containsKey(name);
            if (inRegistry && (entry == null || entry.unavailable() != null)) {
                // Registered but not served: only the registry changes.
                Path store = registered.get(name).path();
                writeRegistryWithout(name, "device " + name + " was not removed");
                known.remove(name);
                LOG.info("device {} ({}) dropped from the registry; it was not served", name, store);
                return;
            }
            DeviceRegistry.Pending pending = null;
            if (inRegistry) {
                try {
                    pending = registry.prepare(without(name));
                } catch (IOException | RuntimeException e) {
                    throw failure(e, "device " + name + " was not removed: cannot update " + registry.file());
                }
            }
            try {
                engine.removeDevice(name, force);
            } catch (RuntimeException e) {
                if (pending != null) {
                    pending.abort();
                }
                throw e;
            }
            known.remove(name);
            if (pending != null) {
                try {
                    pending.commit();
                } catch (IOException e) {
                    throw failure(e, "device " + name + " is removed, but " + registry.file() + " could not be updated,"
                            + " so it will be served again at the next start unless it is removed again");
                }
                registered.remove(name);
            }
            LOG.info("device {} removed{}{}", name, force ? " (forced)" : "",
                    entry != null && entry.origin() != Origin.ADDED ? "; it was declared by " + declaredBy(entry.origin())
                            + " and is served again at the next start that declares it" : "");
        } finally {
            lock.unlock();
        }
    }

    /** Rewrites the registry without {@code name}; all or nothing. */
    private void writeRegistryWithout(String name, String what) {
        try {
            registry.prepare(without(name)).commit();
        } catch (IOException | RuntimeException e) {
            throw failure(e, what + ": cannot update " + registry.file());
        }
        registered.remove(name);
    }

    private List<DeviceRegistry.Entry> without(String name) {
        return registered.values().stream().filter(e -> !e.name().equals(name)).toList();
    }

    /** Whether the device {@code name} is served read-only ({@code :ro}); false for an unknown name. */
    boolean isReadOnly(String name) {
        Entry e = known.get(name);
        return e != null && e.readOnly();
    }

    @Override
    public List<Entry> entries() {
        return List.copyOf(known.values());
    }

    /** The registry's entries (tests). */
    List<DeviceRegistry.Entry> registered() {
        lock.lock();
        try {
            return List.copyOf(registered.values());
        } finally {
            lock.unlock();
        }
    }

    /** A failure to report: an engine error as it is, a registry error as EIO (ENOSPC when full). */
    private static BlksnapException failure(Exception e, String what) {
        if (e instanceof BlksnapException b) {
            return b;
        }
        if (e instanceof IllegalArgumentException) {
            return new BlksnapException(Errno.EINVAL, what + ": " + e.getMessage(), e);
        }
        boolean full = e.getMessage() != null && e.getMessage().contains("No space left");
        return new BlksnapException(full ? Errno.ENOSPC : Errno.EIO, what + ": " + e.getMessage(), e);
    }

    private static void deleteCreated(BackingStores.Opened opened, Path path, Exception failure) {
        if (opened.created()) {
            try {
                Files.deleteIfExists(path);
            } catch (IOException d) {
                failure.addSuppressed(d);
            }
        }
    }

    /** Whether two paths name one store: equal, or the same file once both exist. */
    static boolean samePath(Path a, Path b) {
        Path x = a.toAbsolutePath().normalize();
        Path y = b.toAbsolutePath().normalize();
        if (x.equals(y)) {
            return true;
        }
        try {
            return Files.exists(x) && Files.exists(y) && Files.isSameFile(x, y);
        } catch (IOException e) {
            return false;
        }
    }

    private static String declaredBy(DeviceSpec d) {
        return declaredBy(d.origin());
    }

    private static String declaredBy(Origin o) {
        return switch (o) {
            case FLAG -> "--device";
            case CONFIG -> "the config file";
            case DEFAULT -> "the default";
            case ADDED -> "device add";
        };
    }

    private static void closeQuietly(BlockDevice device) {
        try {
            device.close();
        } catch (IOException e) {
            LOG.warn("closing {} failed: {}", device, e.toString());
        }
    }
}
