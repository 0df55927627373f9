package org.blksnap.ctrl;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Consumer;
import java.util.function.Function;
import org.blksnap.ctrl.api.Range;
import org.blksnap.ctrl.api.Replies;
import org.blksnap.ctrl.api.Reply;
import org.blksnap.ctrl.api.Request;
import org.blksnap.ctrl.api.Requests;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.CbtInfo;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ImageInfo;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Status;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.Version;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The control operations over the engine, transport-free: a request record in, a reply record out,
 * a {@link BlksnapException} for every error. The request's form was checked when it was read
 * ({@code WireJson}); what its values mean is for the engine alone to judge, so nothing here
 * re-checks them. The one check of its own is the daemon's: freeze mount points
 * ({@link FreezeHooks#of}). Devices are added and removed through the daemon ({@link DeviceAdmin}),
 * which opens backing stores and keeps the registry. Thread-safe (the engine and the daemon are).
 */
final class Operations {
    private static final Logger LOG = LoggerFactory.getLogger(Operations.class);

    private final Blksnap engine;
    private final DeviceAdmin devices;
    private final ExportLocator exports;
    private final FreezeHooks.CommandRunner commands;
    private final Consumer<SnapshotEvent> eventObserver;
    private final AccessPolicy access;
    private final SnapshotLeases leases;
    private volatile BackupAgent agent = BackupAgent.NONE;

    Operations(Blksnap engine, DeviceAdmin devices, ExportLocator exports, FreezeHooks.CommandRunner commands,
               Consumer<SnapshotEvent> eventObserver, AccessPolicy access) {
        this.engine = engine;
        this.devices = devices;
        this.exports = exports;
        this.commands = commands;
        this.eventObserver = eventObserver;
        this.access = access;
        this.leases = new SnapshotLeases(engine);
    }

    /** From now on the agent operations go to {@code a}. */
    void agent(BackupAgent a) {
        agent = a;
    }

    /** Stops the lease reaper (at the control API's close). */
    void close() {
        leases.close();
    }

    /**
     * Runs {@code request} for {@code caller}; every path it names goes through the access policy
     * ({@link AccessPolicy#withPath}).
     */
    Reply run(AccessPolicy.Caller caller, Request<?> request) {
        return switch (request) {
            case Requests.Version _ -> version(engine.version());
            case Requests.Params _ -> new Replies.Params(engine.params().asMap());
            case Requests.ParamsGet q -> new Replies.Param(q.name(), engine.params().get(q.name()));
            case Requests.ParamsSet q -> paramsSet(q);
            case Requests.Status _ -> status(engine.status());
            case Requests.DeviceList _ -> deviceList();
            case Requests.DeviceAdd q -> deviceAdd(caller, q);
            case Requests.DeviceRemove q -> deviceRemove(q);
            case Requests.TrackerCollect _ -> new Replies.Trackers(engine.trackerCollect().stream()
                    .map(Operations::tracker).toList());
            case Requests.ReadCbtMap q -> Replies.CbtMapPiece.of(q.device(), q.offset(),
                    engine.trackerReadCbtMap(q.device(), q.offset(), Math.toIntExact(q.length())));
            case Requests.MarkDirty q -> markDirty(q);
            case Requests.TrackerRemove q -> trackerRemove(q);
            case Requests.SnapshotCreate q -> snapshotCreate(q);
            case Requests.AppendStorage q -> appendStorage(caller, q);
            case Requests.Take q -> take(caller, q);
            case Requests.SnapshotCollect _ -> new Replies.SnapshotIds(engine.snapshotCollect());
            case Requests.CollectImages q -> new Replies.Images(engine.snapshotCollectImages(q.id()).stream()
                    .map(this::image).toList());
            case Requests.WaitEvent q -> waitEvent(q);
            case Requests.Destroy q -> destroy(q);
            case Requests.SnapshotRenew q -> renew(q);
            case Requests.AgentStart q -> agent.start(caller, q);
            case Requests.AgentWait q -> agent.await(q);
            case Requests.AgentCancel q -> {
                agent.cancel(q);
                yield new Replies.Done();
            }
        };
    }

    private static Replies.Version version(Version v) {
        return new Replies.Version(v.toString(), v.major(), v.minor(), v.revision(), v.build());
    }

    private Replies.Param paramsSet(Requests.ParamsSet q) {
        engine.params().set(q.name(), q.value());
        LOG.info("parameter {} set to {}", q.name(), q.value());
        return new Replies.Param(q.name(), engine.params().get(q.name()));
    }

    private Replies.Status status(Status s) {
        return new Replies.Status(s.version(), s.params(), s.devices().stream().map(this::deviceStatus).toList(),
                s.snapshots().stream().map(this::snapshotStatus).toList(), agent.jobs());
    }

    private Replies.DeviceStatus deviceStatus(Status.DeviceStatus d) {
        return new Replies.DeviceStatus(d.name(), d.sizeBytes(), d.tracker() == null ? null : tracker(d.tracker()),
                d.snapshotId(), exports.uri(d.name()));
    }

    private Replies.SnapshotStatus snapshotStatus(Status.SnapshotStatus s) {
        SnapshotLeases.Left lease = leases.lease(s.id());
        return new Replies.SnapshotStatus(s.id(), s.state(), s.devices(),
                s.images().stream().map(this::statusImage).toList(), s.capacitySectors(), s.usedSectors(),
                s.requestedSectors(), s.chunksCopied(), s.pendingEvents(), s.corruptedErrno(), s.createdAtMillis(),
                s.takenAtMillis(), lease == null ? null : lease.seconds(), lease == null ? null : lease.leftMillis());
    }

    private Replies.Image image(ImageInfo i) {
        return new Replies.Image(i.device(), i.image(), i.sizeBytes(), exports.uri(i.image()));
    }

    private Replies.StatusImage statusImage(ImageInfo i) {
        return new Replies.StatusImage(i.device(), i.image(), i.snapshotId(), i.sizeBytes(), exports.uri(i.image()));
    }

    /**
     * The engine's devices with what the daemon knows of each (path, origin), then the registered
     * devices the daemon could not open, in name order.
     */
    private Replies.Devices deviceList() {
        Map<String, DeviceAdmin.Entry> known = new HashMap<>();
        for (DeviceAdmin.Entry e : devices.entries()) {
            known.put(e.name(), e);
        }
        TreeMap<String, Replies.Device> out = new TreeMap<>();
        for (Status.DeviceStatus d : engine.status().devices()) {
            DeviceAdmin.Entry e = known.get(d.name());
            out.put(d.name(), new Replies.Device(d.name(), d.sizeBytes(), d.tracker() != null, d.snapshotId(),
                    exports.uri(d.name()), e == null ? null : e.path().toString(),
                    e == null ? null : e.origin().wireName(), null, Replies.Device.readOnly(e != null && e.readOnly())));
        }
        for (DeviceAdmin.Entry e : known.values()) {
            if (e.unavailable() != null && !out.containsKey(e.name())) {
                out.put(e.name(), new Replies.Device(e.name(), 0, false, null, null, e.path().toString(),
                        e.origin().wireName(), e.unavailable(), Replies.Device.readOnly(e.readOnly())));
            }
        }
        return new Replies.Devices(List.copyOf(out.values()));
    }

    private Replies.Device deviceAdd(AccessPolicy.Caller caller, Requests.DeviceAdd q) {
        long createSizeBytes = q.size() == null ? 0 : q.size().bytes();
        DeviceAdmin.Entry e = withPath(caller, q.path().path(), "device add path",
                p -> devices.add(q.name(), p, createSizeBytes, q.readOnlyRequested()), added -> devices.remove(added.name(), true));
        // A new device has no tracker and is in no snapshot.
        return new Replies.Device(e.name(), e.sizeBytes(), false, null, exports.uri(e.name()),
                e.path().toString(), e.origin().wireName(), null, Replies.Device.readOnly(e.readOnly()));
    }

    private Replies.Done deviceRemove(Requests.DeviceRemove q) {
        devices.remove(q.name(), q.force());
        return new Replies.Done();
    }

    private static Replies.Tracker tracker(CbtInfo c) {
        return new Replies.Tracker(c.device(), c.blockSizeBytes(), c.capacityBytes(), c.blockCount(), c.generationId(),
                c.snapNumber(), c.generationReason().name(), c.generationDetail());
    }

    private Replies.Done markDirty(Requests.MarkDirty q) {
        engine.trackerMarkDirty(q.device(), sectorRanges(q.ranges()));
        LOG.info("marked {} range(s) dirty on {}", q.ranges().size(), q.device());
        return new Replies.Done();
    }

    private Replies.Done trackerRemove(Requests.TrackerRemove q) {
        engine.trackerRemove(q.device());
        LOG.info("tracker of {} removed", q.device());
        return new Replies.Done();
    }

    private Replies.Created snapshotCreate(Requests.SnapshotCreate q) {
        if (q.leaseSeconds() != null) {
            SnapshotLeases.check(q.leaseSeconds());
        }
        Replies.Created created = new Replies.Created(engine.snapshotCreate(q.devices()));
        if (q.leaseSeconds() != null) {
            leases.hold(created.id(), q.leaseSeconds());
        }
        LOG.info("snapshot {} created for {}{}", created.id(), q.devices(),
                q.leaseSeconds() == null ? "" : " with a lease of " + q.leaseSeconds() + " s");
        return created;
    }

    private Replies.Done renew(Requests.SnapshotRenew q) {
        leases.renew(q.id());
        return new Replies.Done();
    }

    private Replies.Done appendStorage(AccessPolicy.Caller caller, Requests.AppendStorage q) {
        long sizeBytes = q.size() == null ? 0 : q.size().bytes();
        // Storage cannot be taken back from a snapshot: one that was tricked into opening a file
        // outside the allowed directories is destroyed.
        withPath(caller, q.path().path(), "append-storage path", p -> {
            devices.checkStorage(p);
            engine.snapshotAppendStorage(q.id(), new StorageSpec(p, sizeBytes, sizeBytes > 0, sectorRanges(q.ranges())));
            return q.id();
        }, engine::snapshotDestroy);
        LOG.info("snapshot {}: storage {} appended ({})", q.id(), q.path(),
                q.ranges().isEmpty() ? "whole" : q.ranges().size() + " range(s)");
        return new Replies.Done();
    }

    private Replies.Done take(AccessPolicy.Caller caller, Requests.Take q) {
        List<Path> mountPoints = q.freeze().stream()
                .map(m -> withPath(caller, m.path(), "take freeze mount point", p -> p, p -> { }))
                .toList();
        TakeHooks hooks = mountPoints.isEmpty() ? TakeHooks.NONE : FreezeHooks.of(mountPoints, commands);
        engine.snapshotTake(q.id(), hooks);
        LOG.info("snapshot {} taken{}", q.id(), mountPoints.isEmpty() ? "" : " (froze " + mountPoints + ")");
        return new Replies.Done();
    }

    private Replies.WaitEvent waitEvent(Requests.WaitEvent q) {
        leases.touch(q.id());
        SnapshotEvent ev = engine.snapshotWaitEvent(q.id(), q.timeoutMs());
        leases.touch(q.id());
        eventObserver.accept(ev);
        return new Replies.WaitEvent(event(ev));
    }

    private static Replies.Event event(SnapshotEvent ev) {
        return switch (ev) {
            case SnapshotEvent.LowFreeSpace l -> new Replies.LowFreeSpace(l.code(), l.name(), l.timeNanos(),
                    l.requestedSectors());
            case SnapshotEvent.Corrupted c -> {
                Errno name = Errno.ofNumber(c.errno());
                yield new Replies.Corrupted(c.code(), c.name(), c.timeNanos(), c.device(), c.errno(),
                        name == null ? null : name.name());
            }
            case SnapshotEvent.GenerationReset g -> new Replies.GenerationReset(g.code(), g.name(), g.timeNanos(),
                    g.device(), g.generationId(), g.reason().name(), g.detail());
        };
    }

    private Replies.Done destroy(Requests.Destroy q) {
        engine.snapshotDestroy(q.id());
        leases.forget(q.id());
        LOG.info("snapshot {} destroyed", q.id());
        return new Replies.Done();
    }

    private <T> T withPath(AccessPolicy.Caller caller, Path path, String what, Function<Path, T> use,
                           Consumer<T> undo) {
        return access.withPath(caller, path, what, use, undo);
    }

    /** The engine's ranges; the engine's type judges the numbers (EINVAL for a negative sector or count). */
    private static List<SectorRange> sectorRanges(List<Range> ranges) {
        return ranges.stream().map(r -> new SectorRange(r.sector(), r.count())).toList();
    }
}
