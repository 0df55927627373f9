package org.blksnap.ctrl;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.UUID;
import java.util.function.Consumer;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.SnapshotEvent;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.Version;
import org.blksnap.engine.ImageInfo;
import org.blksnap.engine.Status;
import org.blksnap.engine.CbtInfo;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

/**
 * The control operations over the engine, transport-free: a JSON object in, a JSON object out, a
 * {@link BlksnapException} for every error. All argument checks run before the engine is called,
 * so a rejected request changes nothing. Thread-safe (the engine is).
 */
final class Operations {
    private static final Logger LOG = LoggerFactory.getLogger(Operations.class);

    /** Largest CBT map piece one request may read, in blocks (= bytes). */
    static final int MAX_CBT_READ_BLOCKS = 16 << 20;

    private final Blksnap engine;
    private final JsonMapper json;
    private final ExportLocator exports;
    private final FreezeHooks.CommandRunner commands;
    private final Consumer<SnapshotEvent> eventObserver;

    Operations(Blksnap engine, JsonMapper json, ExportLocator exports, FreezeHooks.CommandRunner commands,
               Consumer<SnapshotEvent> eventObserver) {
        this.engine = engine;
        this.json = json;
        this.exports = exports;
        this.commands = commands;
        this.eventObserver = eventObserver;
    }

    ObjectNode run(Operation op, JsonNode body) {
        Args a = new Args(op.path(), body);
        return switch (op) {
            case VERSION -> version(a.finish());
            case PARAMS -> params(a.finish());
            case PARAMS_GET -> paramsGet(a);
            case PARAMS_SET -> paramsSet(a);
            case STATUS -> status(a.finish());
            case DEVICE_LIST -> devices(a.finish());
            case TRACKER_COLLECT -> trackerCollect(a.finish());
            case TRACKER_READ_CBT_MAP -> readCbtMap(a);
            case TRACKER_MARK_DIRTY -> markDirty(a);
            case TRACKER_REMOVE -> trackerRemove(a);
            case SNAPSHOT_CREATE -> snapshotCreate(a);
            case SNAPSHOT_APPEND_STORAGE -> appendStorage(a);
            case SNAPSHOT_TAKE -> take(a);
            case SNAPSHOT_COLLECT -> snapshotCollect(a.finish());
            case SNAPSHOT_COLLECT_IMAGES -> collectImages(a);
            case SNAPSHOT_WAIT_EVENT -> waitEvent(a);
            case SNAPSHOT_DESTROY -> destroy(a);
        };
    }

    private ObjectNode ok() {
        return json.createObjectNode();
    }

    private ObjectNode version(Args a) {
        Version v = engine.version();
        ObjectNode o = ok();
        o.put("version", v.toString());
        o.put("major", v.major());
        o.put("minor", v.minor());
        o.put("revision", v.revision());
        o.put("build", v.build());
        return o;
    }

    private ObjectNode params(Args a) {
        ObjectNode o = ok();
        ObjectNode p = o.putObject("params");
        engine.params().asMap().forEach(p::put);
        return o;
    }

    private ObjectNode paramsGet(Args a) {
        String name = a.string("name");
        a.finish();
        ObjectNode o = ok();
        o.put("name", name);
        o.put("value", engine.params().get(name));
        return o;
    }

    private ObjectNode paramsSet(Args a) {
        String name = a.string("name");
        long value = a.requiredLong("value");
        a.finish();
        engine.params().set(name, value);
        LOG.info("parameter {} set to {}", name, value);
        ObjectNode o = ok();
        o.put("name", name);
        o.put("value", engine.params().get(name));
        return o;
    }

    private ObjectNode status(Args a) {
        Status s = engine.status();
        ObjectNode o = json.valueToTree(s);
        for (JsonNode snap : o.path("snapshots")) {
            for (JsonNode img : snap.path("images")) {
                String uri = exports.uri(img.path("image").asString());
                if (uri != null) {
                    ((ObjectNode) img).put("uri", uri);
                }
            }
        }
        for (JsonNode dev : o.path("devices")) {
            String uri = exports.uri(dev.path("name").asString());
            if (uri != null) {
                ((ObjectNode) dev).put("uri", uri);
            }
        }
        return o;
    }

    private ObjectNode devices(Args a) {
        ObjectNode o = ok();
        ArrayNode arr = o.putArray("devices");
        for (Status.DeviceStatus d : engine.status().devices()) {
            ObjectNode e = arr.addObject();
            e.put("name", d.name());
            e.put("sizeBytes", d.sizeBytes());
            e.put("tracked", d.tracker() != null);
            e.put("snapshotId", d.snapshotId() == null ? null : d.snapshotId().toString());
            e.put("uri", exports.uri(d.name()));
        }
        return o;
    }

    private ObjectNode cbtInfo(CbtInfo c) {
        ObjectNode e = json.createObjectNode();
        e.put("device", c.device());
        e.put("blockSizeBytes", c.blockSizeBytes());
        e.put("capacityBytes", c.capacityBytes());
        e.put("blockCount", c.blockCount());
        e.put("generationId", c.generationId() == null ? null : c.generationId().toString());
        e.put("snapNumber", c.snapNumber());
        return e;
    }

    private ObjectNode trackerCollect(Args a) {
        ObjectNode o = ok();
        ArrayNode arr = o.putArray("trackers");
        for (CbtInfo c : engine.trackerCollect()) {
            arr.add(cbtInfo(c));
        }
        return o;
    }

    private ObjectNode readCbtMap(Args a) {
        String device = a.string("device");
        long offset = a.longValue("offset", 0);
        long length = a.requiredLong("length");
        a.finish();
        if (offset < 0) {
            throw new BlksnapException(Errno.EINVAL, "read-cbt-map: offset (" + offset + " blocks) must be >= 0");
        }
        if (length <= 0 || length > MAX_CBT_READ_BLOCKS) {
            throw new BlksnapException(Errno.EINVAL, "read-cbt-map: length (" + length + " blocks) must be > 0 and <= "
                    + MAX_CBT_READ_BLOCKS);
        }
        byte[] map = engine.trackerReadCbtMap(device, offset, (int) length);
        ObjectNode o = ok();
        o.put("device", device);
        o.put("offset", offset);
        o.put("length", map.length);
        o.put("data", Base64.getEncoder().encodeToString(map));
        return o;
    }

    private ObjectNode markDirty(Args a) {
        String device = a.string("device");
        List<SectorRange> ranges = a.ranges("ranges", true);
        a.finish();
        engine.trackerMarkDirty(device, ranges);
        LOG.info("marked {} range(s) dirty on {}", ranges.size(), device);
        return ok();
    }

    private ObjectNode trackerRemove(Args a) {
        String device = a.string("device");
        a.finish();
        engine.trackerRemove(device);
        LOG.info("tracker of {} removed", device);
        return ok();
    }

    private ObjectNode snapshotCreate(Args a) {
        List<String> devices = a.strings("devices", true);
        a.finish();
        if (devices.isEmpty()) {
            throw new BlksnapException(Errno.EINVAL, "snapshot create: 'devices' must name at least one device");
        }
        UUID id = engine.snapshotCreate(devices);
        LOG.info("snapshot {} created for {}", id, devices);
        ObjectNode o = ok();
        o.put("id", id.toString());
        return o;
    }

    private ObjectNode appendStorage(Args a) {
        UUID id = a.uuid("id");
        Path path = a.absolutePath("path");
        long size = a.sizeBytes("size");
        List<SectorRange> ranges = a.ranges("ranges", false);
        a.finish();
        if (Files.isDirectory(path)) {
            throw new BlksnapException(Errno.EINVAL, "append-storage: " + path + " is a directory; give a file or block device");
        }
        if (!Files.exists(path)) {
            if (size == 0) {
                throw new BlksnapException(Errno.ENOENT, "append-storage: " + path
                        + " does not exist (give a size to create it)");
            }
            Path parent = path.getParent();
            if (parent == null || !Files.isDirectory(parent)) {
                throw new BlksnapException(Errno.ENOENT, "append-storage: directory " + parent + " of " + path
                        + " does not exist");
            }
        }
        if (size % SectorRange.SECTOR_BYTES != 0) {
            throw new BlksnapException(Errno.EINVAL, "append-storage: size (" + size + " bytes) must be a multiple of "
                    + SectorRange.SECTOR_BYTES);
        }
        engine.snapshotAppendStorage(id, new StorageSpec(path, size, size > 0, ranges));
        LOG.info("snapshot {}: storage {} appended ({})", id, path,
                ranges.isEmpty() ? "whole" : ranges.size() + " range(s)");
        return ok();
    }

    private ObjectNode take(Args a) {
        UUID id = a.uuid("id");
        List<String> freeze = a.strings("freeze", false);
        a.finish();
        List<Path> mountPoints = new ArrayList<>();
        for (String mp : freeze) {
            Path p = Path.of(mp);
            if (!p.isAbsolute()) {
                throw new BlksnapException(Errno.EINVAL, "take: freeze mount point '" + mp + "' must be an absolute path");
            }
            if (!Files.isDirectory(p)) {
                throw new BlksnapException(Errno.ENOENT, "take: freeze mount point " + mp + " is not a directory");
            }
            mountPoints.add(p.normalize());
        }
        TakeHooks hooks = mountPoints.isEmpty() ? TakeHooks.NONE : new FreezeHooks(mountPoints, commands);
        engine.snapshotTake(id, hooks);
        LOG.info("snapshot {} taken{}", id, mountPoints.isEmpty() ? "" : " (froze " + mountPoints + ")");
        return ok();
    }

    private ObjectNode snapshotCollect(Args a) {
        ObjectNode o = ok();
        ArrayNode arr = o.putArray("ids");
        engine.snapshotCollect().forEach(id -> arr.add(id.toString()));
        return o;
    }

    private ObjectNode collectImages(Args a) {
        UUID id = a.uuid("id");
        a.finish();
        ObjectNode o = ok();
        ArrayNode arr = o.putArray("images");
        for (ImageInfo i : engine.snapshotCollectImages(id)) {
            ObjectNode e = arr.addObject();
            e.put("device", i.device());
            e.put("image", i.image());
            e.put("sizeBytes", i.sizeBytes());
            e.put("uri", exports.uri(i.image()));
        }
        return o;
    }

    private ObjectNode waitEvent(Args a) {
        UUID id = a.uuid("id");
        long timeout = a.requiredLong("timeoutMs");
        a.finish();
        if (timeout < 0) {
            throw new BlksnapException(Errno.EINVAL, "wait-event: timeoutMs (" + timeout + ") must be >= 0");
        }
        SnapshotEvent ev = engine.snapshotWaitEvent(id, timeout);
        eventObserver.accept(ev);
        ObjectNode o = ok();
        o.set("event", event(ev));
        return o;
    }

    ObjectNode event(SnapshotEvent ev) {
        ObjectNode e = json.createObjectNode();
        e.put("code", ev.code());
        e.put("name", ev.name());
        e.put("timeNanos", ev.timeNanos());
        switch (ev) {
            case SnapshotEvent.LowFreeSpace l -> e.put("requestedSectors", l.requestedSectors());
            case SnapshotEvent.Corrupted c -> {
                e.put("device", c.device());
                e.put("errno", c.errno());
                Errno name = Errno.ofNumber(c.errno());
                e.put("errnoName", name == null ? null : name.name());
            }
        }
        return e;
    }

    private ObjectNode destroy(Args a) {
        UUID id = a.uuid("id");
        a.finish();
        engine.snapshotDestroy(id);
        LOG.info("snapshot {} destroyed", id);
        return ok();
    }
}
