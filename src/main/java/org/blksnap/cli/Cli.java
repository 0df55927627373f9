package org.blksnap.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.UUID;
import org.blksnap.ctrl.Operation;
import org.blksnap.ctrl.Sizes;
import org.blksnap.engine.SectorRange;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

/**
 * What each command does, independent of how it is spelt on the command line (the new verbs and the
 * upstream v1 aliases both land here). Prints plain text, or with {@code --json} the daemon's
 * answer as one JSON line.
 */
final class Cli {
    static final int CBT_PIECE_BLOCKS = 1 << 20;

    final ControlClient client;
    final boolean jsonOutput;
    final PrintWriter out;
    final PrintWriter err;
    final JsonMapper json;

    Cli(ControlClient client, boolean jsonOutput, PrintWriter out, PrintWriter err, JsonMapper json) {
        this.client = client;
        this.jsonOutput = jsonOutput;
        this.out = out;
        this.err = err;
        this.json = json;
    }

    /** A local failure (a file we must write), reported with exit code {@link ExitCodes#IO}. */
    static final class LocalIoException extends Exception {
        LocalIoException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    ObjectNode call(Operation op, ObjectNode body) throws Exception {
        return client.call(op, body);
    }

    ObjectNode obj() {
        return json.createObjectNode();
    }

    void printJson(JsonNode node) {
        out.println(json.writeValueAsString(node));
    }

    int version() throws Exception {
        ObjectNode r = call(Operation.VERSION, null);
        if (jsonOutput) {
            printJson(r);
        } else {
            out.println(r.path("version").asString());
        }
        return 0;
    }

    int params(String arg) throws Exception {
        if (arg == null) {
            ObjectNode r = call(Operation.PARAMS, null);
            if (jsonOutput) {
                printJson(r);
            } else {
                r.path("params").properties().forEach(e -> out.println(e.getKey() + "=" + e.getValue().asString()));
            }
            return 0;
        }
        int eq = arg.indexOf('=');
        ObjectNode r;
        if (eq < 0) {
            r = call(Operation.PARAMS_GET, obj().put("name", arg));
        } else {
            String value = arg.substring(eq + 1).trim();
            long v;
            try {
                v = Long.parseLong(value);
            } catch (NumberFormatException e) {
                throw new picocli.CommandLine.ParameterException(new picocli.CommandLine(new Object()),
                        "value of " + arg.substring(0, eq) + " ('" + value + "') is not a whole number");
            }
            r = call(Operation.PARAMS_SET, obj().put("name", arg.substring(0, eq).trim()).put("value", v));
        }
        if (jsonOutput) {
            printJson(r);
        } else if (eq < 0) {
            out.println(r.path("value").asString());
        } else {
            out.println(r.path("name").asString() + "=" + r.path("value").asString());
        }
        return 0;
    }

    int status() throws Exception {
        ObjectNode r = call(Operation.STATUS, null);
        if (jsonOutput) {
            printJson(r);
            return 0;
        }
        out.println("version " + r.path("version").asString());
        out.println("devices:");
        for (JsonNode d : r.path("devices")) {
            JsonNode t = d.path("tracker");
            out.println("  " + d.path("name").asString() + " size=" + Sizes.format(d.path("sizeBytes").asLong())
                    + (t.isObject() ? " generation=" + t.path("generationId").asString() + " snap_number="
                    + t.path("snapNumber").asInt() : " untracked")
                    + (d.path("snapshotId").isString() ? " snapshot=" + d.path("snapshotId").asString() : "")
                    + (d.path("uri").isString() ? " uri=" + d.path("uri").asString() : ""));
        }
        out.println("snapshots:");
        for (JsonNode s : r.path("snapshots")) {
            out.println("  " + s.path("id").asString() + " " + s.path("state").asString()
                    + " devices=" + join(s.path("devices"))
                    + " storage=" + s.path("usedSectors").asLong() + "/" + s.path("capacitySectors").asLong() + " sectors"
                    + " chunks_copied=" + s.path("chunksCopied").asLong()
                    + (s.path("corruptedErrno").asInt() != 0 ? " corrupted_errno=" + s.path("corruptedErrno").asInt() : ""));
            for (JsonNode i : s.path("images")) {
                out.println("    " + i.path("device").asString() + " " + i.path("image").asString()
                        + (i.path("uri").isString() ? " " + i.path("uri").asString() : ""));
            }
        }
        return 0;
    }

    private static String join(JsonNode arr) {
        List<String> s = new ArrayList<>();
        arr.forEach(n -> s.add(n.asString()));
        return String.join(",", s);
    }

    int deviceList() throws Exception {
        ObjectNode r = call(Operation.DEVICE_LIST, null);
        if (jsonOutput) {
            printJson(r);
            return 0;
        }
        for (JsonNode d : r.path("devices")) {
            out.println(d.path("name").asString() + " " + d.path("sizeBytes").asLong() + " "
                    + (d.path("tracked").asBoolean() ? "tracked" : "untracked") + " "
                    + (d.path("uri").isString() ? d.path("uri").asString() : "-"));
        }
        return 0;
    }

    int trackerCollect() throws Exception {
        ObjectNode r = call(Operation.TRACKER_COLLECT, null);
        if (jsonOutput) {
            printJson(r);
            return 0;
        }
        for (JsonNode t : r.path("trackers")) {
            out.println(t.path("device").asString() + " generation=" + t.path("generationId").asString()
                    + " snap_number=" + t.path("snapNumber").asInt()
                    + " block_size=" + t.path("blockSizeBytes").asLong()
                    + " block_count=" + t.path("blockCount").asLong()
                    + " capacity=" + t.path("capacityBytes").asLong());
        }
        return 0;
    }

    int readCbtMap(String device, Path file, long offset, Long length) throws Exception {
        long total = -1;
        if (length != null) {
            total = length;
        } else {
            for (JsonNode t : call(Operation.TRACKER_COLLECT, null).path("trackers")) {
                if (t.path("device").asString().equals(device)) {
                    total = Math.max(0, t.path("blockCount").asLong() - offset);
                }
            }
        }
        java.io.ByteArrayOutputStream map = new java.io.ByteArrayOutputStream();
        long pos = offset;
        long remaining = total;
        while (total < 0 || remaining > 0) {
            int piece = (int) (total < 0 ? CBT_PIECE_BLOCKS : Math.min(CBT_PIECE_BLOCKS, remaining));
            ObjectNode r = call(Operation.TRACKER_READ_CBT_MAP,
                    obj().put("device", device).put("offset", pos).put("length", piece));
            byte[] data = Base64.getDecoder().decode(r.path("data").asString());
            map.write(data);
            pos += data.length;
            remaining -= data.length;
            if (data.length < piece) {
                break;
            }
            if (total < 0 && data.length == 0) {
                break;
            }
        }
        try {
            Files.write(file, map.toByteArray(), StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                    StandardOpenOption.WRITE);
        } catch (IOException e) {
            throw new LocalIoException("cannot write the CBT map to " + file + ": " + e.getMessage(), e);
        }
        if (jsonOutput) {
            printJson(obj().put("device", device).put("file", file.toAbsolutePath().toString())
                    .put("offset", offset).put("length", map.size()));
        } else {
            out.println(map.size() + " blocks of " + device + " from block " + offset + " written to " + file);
        }
        return 0;
    }

    int markDirty(String device, List<SectorRange> ranges) throws Exception {
        ObjectNode body = obj().put("device", device);
        ArrayNode arr = body.putArray("ranges");
        for (SectorRange r : ranges) {
            arr.addObject().put("sector", r.sectorOffset()).put("count", r.sectorCount());
        }
        ObjectNode r = call(Operation.TRACKER_MARK_DIRTY, body);
        if (jsonOutput) {
            printJson(r);
        }
        return 0;
    }

    int trackerRemove(String device) throws Exception {
        ObjectNode r = call(Operation.TRACKER_REMOVE, obj().put("device", device));
        if (jsonOutput) {
            printJson(r);
        }
        return 0;
    }

    int snapshotCreate(List<String> devices) throws Exception {
        ObjectNode body = obj();
        ArrayNode arr = body.putArray("devices");
        devices.forEach(arr::add);
        ObjectNode r = call(Operation.SNAPSHOT_CREATE, body);
        if (jsonOutput) {
            printJson(r);
        } else {
            out.println(r.path("id").asString());
        }
        return 0;
    }

    int appendStorage(UUID id, Path file, Long sizeBytes, List<SectorRange> ranges) throws Exception {
        ObjectNode body = obj().put("id", id.toString()).put("path", file.toAbsolutePath().normalize().toString());
        if (sizeBytes != null) {
            body.put("size", sizeBytes);
        }
        if (ranges != null && !ranges.isEmpty()) {
            ArrayNode arr = body.putArray("ranges");
            for (SectorRange r : ranges) {
                arr.addObject().put("sector", r.sectorOffset()).put("count", r.sectorCount());
            }
        }
        ObjectNode r = call(Operation.SNAPSHOT_APPEND_STORAGE, body);
        if (jsonOutput) {
            printJson(r);
        }
        return 0;
    }

    int take(UUID id, List<Path> freeze) throws Exception {
        ObjectNode body = obj().put("id", id.toString());
        if (freeze != null && !freeze.isEmpty()) {
            ArrayNode arr = body.putArray("freeze");
            freeze.forEach(p -> arr.add(p.toAbsolutePath().normalize().toString()));
        }
        ObjectNode r = call(Operation.SNAPSHOT_TAKE, body);
        if (jsonOutput) {
            printJson(r);
        }
        return 0;
    }

    int snapshotCollect() throws Exception {
        ObjectNode r = call(Operation.SNAPSHOT_COLLECT, null);
        if (jsonOutput) {
            printJson(r);
        } else {
            r.path("ids").forEach(n -> out.println(n.asString()));
        }
        return 0;
    }

    int images(UUID id) throws Exception {
        ObjectNode r = call(Operation.SNAPSHOT_COLLECT_IMAGES, obj().put("id", id.toString()));
        if (jsonOutput) {
            printJson(r);
        } else {
            for (JsonNode i : r.path("images")) {
                out.println(i.path("device").asString() + " " + i.path("image").asString() + " "
                        + (i.path("uri").isString() ? i.path("uri").asString() : "-"));
            }
        }
        return 0;
    }

    ObjectNode waitEventRaw(UUID id, long timeoutMs) throws Exception {
        return call(Operation.SNAPSHOT_WAIT_EVENT, obj().put("id", id.toString()).put("timeoutMs", timeoutMs));
    }

    static String describe(JsonNode ev) {
        return switch (ev.path("name").asString()) {
            case "low_free_space" -> "low_free_space requested_sectors=" + ev.path("requestedSectors").asLong();
            case "corrupted" -> "corrupted device=" + ev.path("device").asString() + " errno="
                    + ev.path("errno").asInt() + " (" + ev.path("errnoName").asString("?") + ")";
            default -> ev.path("name").asString() + " code=" + ev.path("code").asInt();
        };
    }

    int waitEvent(UUID id, long timeoutMs) throws Exception {
        ObjectNode r = waitEventRaw(id, timeoutMs);
        if (jsonOutput) {
            printJson(r);
        } else {
            out.println(describe(r.path("event")));
        }
        return 0;
    }

    int destroy(UUID id) throws Exception {
        ObjectNode r = call(Operation.SNAPSHOT_DESTROY, obj().put("id", id.toString()));
        if (jsonOutput) {
            printJson(r);
        }
        return 0;
    }

    /**
     * Grows the snapshot's storage on its events until it is destroyed: each low_free_space gets a
     * new file {@code DIR/diff_storage#N} of the requested size (created preallocated by the daemon)
     * while the total stays within {@code limitBytes}; when DIR's filesystem has less room, as much
     * as fits; when it has none, the failure is reported once and the rest is tried again at every
     * poll until it fits or the snapshot overflows. Corrupted events are reported. Exits 0 once the
     * snapshot is gone (ESRCH), after removing the files it created.
     */
    int stretch(UUID id, Path dir, long limitBytes, long pollMs) throws Exception {
        Path absDir = dir.toAbsolutePath().normalize();
        if (!Files.isDirectory(absDir)) {
            throw new picocli.CommandLine.ParameterException(new picocli.CommandLine(new Object()),
                    "--dir " + dir + " is not a directory");
        }
        Stretch st = new Stretch(id, absDir, limitBytes);
        try {
            while (true) {
                ObjectNode r;
                try {
                    r = waitEventRaw(id, pollMs);
                } catch (ControlClient.RemoteException e) {
                    if ("ENOENT".equals(e.errnoName())) {
                        // No event: if a request is still owed (the filesystem was full), try again,
                        // so storage freed there meanwhile is used before the snapshot overflows.
                        if (st.owedBytes > 0 && !st.grow()) {
                            return st.gone();
                        }
                        continue;
                    }
                    if ("ESRCH".equals(e.errnoName())) {
                        return st.gone();
                    }
                    throw e;
                }
                JsonNode ev = r.path("event");
                if ("low_free_space".equals(ev.path("name").asString())) {
                    long want = ev.path("requestedSectors").asLong() * SectorRange.SECTOR_BYTES;
                    long size = Math.min(want, limitBytes - st.allocated);
                    size -= size % SectorRange.SECTOR_BYTES;
                    if (size <= 0) {
                        st.limitReached();
                        continue;
                    }
                    st.owedBytes = size; // a failure already reported stays reported until an append works
                    if (!st.grow()) {
                        return st.gone();
                    }
                } else {
                    if ("corrupted".equals(ev.path("name").asString())) {
                        st.owedBytes = 0; // overflowed for good: more storage cannot help
                    }
                    ObjectNode line = obj().put("stretch", "event");
                    line.set("event", ev);
                    report(line, describe(ev));
                }
            }
        } finally {
            for (Path p : st.created) {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException e) {
                    err.println("blksnap: stretch: cannot remove " + p + ": " + e.getMessage());
                }
            }
            err.flush();
        }
    }

    /** The state of one {@code snapshot stretch}: what it appended, and what it still owes the snapshot. */
    private final class Stretch {
        final UUID id;
        final Path dir;
        final long limitBytes;
        final List<Path> created = new ArrayList<>();
        long allocated;
        int next;
        /** Bytes of the last low_free_space request not appended yet (the filesystem had no room). */
        long owedBytes;
        boolean failureReported;
        boolean limitReported;

        Stretch(UUID id, Path dir, long limitBytes) {
            this.id = id;
            this.dir = dir;
            this.limitBytes = limitBytes;
        }

        /** Appends what is owed, or as much of it as fits. Returns false if the snapshot is gone. */
        boolean grow() throws Exception {
            Path file = dir.resolve("diff_storage#" + next);
            long size = owedBytes;
            long got;
            try {
                got = appendShrinking(id, file, size);
            } catch (ControlClient.RemoteException e) {
                if ("ESRCH".equals(e.errnoName())) {
                    return false;
                }
                if (!failureReported) {
                    // Keep watching: the snapshot lives on until its storage overflows, and the
                    // corrupted event, if it comes, is reported like any other.
                    report(obj().put("stretch", "grow_failed").put("file", file.toString()).put("sizeBytes", size)
                                    .put("errnoName", e.errnoName()).put("errno", e.errno())
                                    .put("message", e.getMessage()).put("allocatedBytes", allocated),
                            "cannot grow the storage by " + Sizes.format(size) + " at " + file + ": "
                                    + e.errnoName() + " (" + e.errno() + "): " + e.getMessage()
                                    + "; retrying while the snapshot lives, it overflows if its storage fills up");
                    failureReported = true;
                }
                return true;
            }
            created.add(file);
            next++;
            allocated += got;
            owedBytes -= got;
            failureReported = false;
            report(obj().put("stretch", "appended").put("file", file.toString()).put("sizeBytes", got)
                            .put("requestedBytes", size).put("allocatedBytes", allocated),
                    "appended " + file + " (" + Sizes.format(got) + (got < size
                            ? " of the " + Sizes.format(size) + " asked for: no room for more there now" : "")
                            + "), total " + Sizes.format(allocated));
            return true;
        }

        void limitReached() {
            if (!limitReported) {
                report(obj().put("stretch", "limit_reached").put("allocatedBytes", allocated).put("limitBytes", limitBytes),
                        "limit " + Sizes.format(limitBytes) + " reached; stopped growing the storage");
                limitReported = true;
            }
        }

        int gone() {
            report(obj().put("stretch", "snapshot_gone").put("allocatedBytes", allocated).put("files", next),
                    "snapshot " + id + " is gone; stretch done (" + next + " file(s), " + Sizes.format(allocated)
                            + " appended)");
            return 0;
        }
    }

    /**
     * Appends a new file of {@code size} bytes; when its filesystem has no room for that much
     * (ENOSPC), tries half the size, and so on down to a sixteenth of it (at least 64 KiB), so a
     * nearly full filesystem still gives what it has. Returns the size appended.
     *
     * @throws ControlClient.RemoteException the last refusal, when nothing could be appended
     */
    private long appendShrinking(UUID id, Path file, long size) throws Exception {
        long floor = Math.max(64L << 10, size / 16);
        long s = size;
        while (true) {
            try {
                appendQuiet(id, file, s);
                return s;
            } catch (ControlClient.RemoteException e) {
                long half = s / 2 / SectorRange.SECTOR_BYTES * SectorRange.SECTOR_BYTES;
                if (!"ENOSPC".equals(e.errnoName()) || half < floor) {
                    throw e;
                }
                s = half;
            }
        }
    }

    private void appendQuiet(UUID id, Path file, long size) throws Exception {
        call(Operation.SNAPSHOT_APPEND_STORAGE, obj().put("id", id.toString()).put("path", file.toString())
                .put("size", size));
    }

    private void report(ObjectNode jsonLine, String text) {
        if (jsonOutput) {
            printJson(jsonLine);
        } else {
            out.println(text);
        }
        out.flush();
    }
}
