package org.blksnap.ctrl.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonSubTypes;
import com.fasterxml.jackson.annotation.JsonTypeInfo;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * The bodies of successful answers, one record per kind of answer (see {@link Operation} for which
 * operation gives which); a component is a JSON field of the same name, in the same order. Sizes are
 * in bytes, sectors are 512 bytes, {@code uri} is an NBD URI or null when the daemon serves no NBD.
 */
public final class Replies {
    private Replies() {
    }

    /** {@code version}: {@code "1.0.0.0"} and its parts. */
    public record Version(String version, int major, int minor, int revision, int build) implements Reply {
    }

    /** {@code params}: every module parameter by kernel name, in the module's order. */
    public record Params(Map<String, Long> params) implements Reply {
        public Params {
            params = Collections.unmodifiableMap(new LinkedHashMap<>(params));
        }
    }

    /** {@code params/get} and {@code params/set}: one parameter and its (new) value. */
    public record Param(String name, long value) implements Reply {
    }

    /**
     * {@code status}: the engine's whole state, and the resident backup agent's jobs ({@code agentJobs}
     * left out when there are none).
     */
    public record Status(String version, Map<String, Long> params, List<DeviceStatus> devices,
                         List<SnapshotStatus> snapshots,
                         @JsonInclude(JsonInclude.Include.NON_EMPTY) List<AgentJobStatus> agentJobs) implements Reply {
        public Status {
            params = Collections.unmodifiableMap(new LinkedHashMap<>(params));
            devices = List.copyOf(devices);
            snapshots = List.copyOf(snapshots);
            agentJobs = agentJobs == null ? List.of() : List.copyOf(agentJobs);
        }

        /** The engine's state, no agent jobs. */
        public Status(String version, Map<String, Long> params, List<DeviceStatus> devices,
                      List<SnapshotStatus> snapshots) {
            this(version, params, devices, snapshots, List.of());
        }
    }

    /**
     * A job of the resident backup agent in {@link Status}: its id, the tool's arguments it runs, when
     * it started (milliseconds since the epoch), and its exit status once it has ended (left out while
     * it runs; an ended job stays listed until its caller collects its end).
     */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    public record AgentJobStatus(UUID id, List<String> args, long startedAtMillis, Integer exitStatus) {
        public AgentJobStatus {
            args = List.copyOf(args);
        }
    }

    /**
     * A device in {@link Status}.
     *
     * @param tracker    its CBT info, or null without a tracker
     * @param snapshotId the snapshot holding it, or null
     * @param uri        left out when the device is not served over NBD
     */
    public record DeviceStatus(String name, long sizeBytes, Tracker tracker, UUID snapshotId,
                               @JsonInclude(JsonInclude.Include.NON_NULL) String uri) {
    }

    /**
     * A snapshot in {@link Status}.
     *
     * @param state          {@code created}, {@code taken} or {@code corrupted}
     * @param corruptedErrno  the errno that corrupted it, or 0
     * @param createdAtMillis when it was created, in milliseconds since the epoch
     * @param takenAtMillis   when it was taken (what its images show), in milliseconds since the epoch; 0
     *                        before take
     * @param leaseSeconds    its lease ({@code snapshot/create leaseSeconds}), or null (left out) without one
     * @param leaseLeftMillis milliseconds until the daemon destroys it unless renewed, or null without a lease
     */
    public record SnapshotStatus(UUID id, String state, List<String> devices, List<StatusImage> images,
                                 long capacitySectors, long usedSectors, long requestedSectors, long chunksCopied,
                                 int pendingEvents, int corruptedErrno, long createdAtMillis, long takenAtMillis,
                                 @JsonInclude(JsonInclude.Include.NON_NULL) Long leaseSeconds,
                                 @JsonInclude(JsonInclude.Include.NON_NULL) Long leaseLeftMillis) {
        public SnapshotStatus {
            devices = List.copyOf(devices);
            images = List.copyOf(images);
        }

        /** A snapshot without a lease. */
        public SnapshotStatus(UUID id, String state, List<String> devices, List<StatusImage> images,
                              long capacitySectors, long usedSectors, long requestedSectors, long chunksCopied,
                              int pendingEvents, int corruptedErrno, long createdAtMillis, long takenAtMillis) {
            this(id, state, devices, images, capacitySectors, usedSectors, requestedSectors, chunksCopied, pendingEvents,
                    corruptedErrno, createdAtMillis, takenAtMillis, null, null);
        }
    }

    /** An image in {@link SnapshotStatus}; {@code uri} is left out when it is not served over NBD. */
    public record StatusImage(String device, String image, UUID snapshotId, long sizeBytes,
                              @JsonInclude(JsonInclude.Include.NON_NULL) String uri) {
    }

    /** {@code devices}: the devices served, and those registered but unavailable, in name order. */
    public record Devices(List<Device> devices) implements Reply {
        public Devices {
            devices = List.copyOf(devices);
        }
    }

    /**
     * A device in {@link Devices}, and the answer of {@code device/add} (the device added).
     *
     * @param sizeBytes   its size; 0 when unavailable
     * @param snapshotId  the snapshot holding it, or null
     * @param uri         its NBD URI, or null (no NBD server, or unavailable)
     * @param path        its backing file or block device, or null if the daemon does not know it
     * @param origin      where it comes from: {@code flag} ({@code blksnapd --device}), {@code config}
     *                    (the config file's {@code device}), {@code default} (disk0, when no device is
     *                    given) or {@code added} ({@code device add}, now or before a restart); null
     *                    if the daemon does not know
     * @param unavailable null for a device served; else why a registered device is not served (its
     *                    backing store was missing or could not be opened at start)
     * @param readOnly    true when it is served read-only over NBD ({@code :ro}); absent (null) otherwise
     */
    public record Device(String name, long sizeBytes, boolean tracked, UUID snapshotId, String uri, String path,
                         String origin, @JsonInclude(JsonInclude.Include.NON_NULL) String unavailable,
                         @JsonInclude(JsonInclude.Include.NON_NULL) Boolean readOnly)
            implements Reply {
        /** A writable device. */
        public Device(String name, long sizeBytes, boolean tracked, UUID snapshotId, String uri, String path,
                      String origin, String unavailable) {
            this(name, sizeBytes, tracked, snapshotId, uri, path, origin, unavailable, null);
        }

        /** The wire form of a read-only flag: true, or null (absent) for writable. */
        public static Boolean readOnly(boolean readOnly) {
            return readOnly ? Boolean.TRUE : null;
        }
    }

    /** {@code tracker/collect}: every tracker, in device-name order. */
    public record Trackers(List<Tracker> trackers) implements Reply {
        public Trackers {
            trackers = List.copyOf(trackers);
        }
    }

    /**
     * The CBT info of one tracked device.
     *
     * @param blockCount       tracking blocks, = bytes of the CBT map
     * @param generationId     changes when the CBT history is lost
     * @param snapNumber       number of the last taken snapshot in this generation
     * @param generationReason why this generation started: {@code NEW_TRACKER}, {@code STATE_MISSING},
     *                         {@code STATE_CORRUPT}, {@code SIZE_CHANGED}, {@code BACKING_CHANGED},
     *                         {@code MAP_CORRUPTED}, {@code NUMBER_WRAPPED}, {@code JOURNAL_FAILED} or
     *                         {@code CHECKPOINT_FAILED} (docs/persistence.md)
     * @param generationDetail what exactly happened (which file, what was wrong, which field changed)
     */
    public record Tracker(String device, int blockSizeBytes, long capacityBytes, int blockCount, UUID generationId,
                          int snapNumber, String generationReason, String generationDetail) {
    }

    /**
     * {@code tracker/read-cbt-map}: {@code length} bytes of the read map from block {@code offset},
     * fewer than asked at the end of the map; {@code data} travels as base64.
     */
    public record CbtMapPiece(String device, long offset, int length, byte[] data) implements Reply {
        /** A piece holding {@code data}. */
        public static CbtMapPiece of(String device, long offset, byte[] data) {
            return new CbtMapPiece(device, offset, data.length, data);
        }
    }

    /** {@code {}}: the operation did what was asked and has nothing to say. */
    public record Done() implements Reply {
    }

    /** {@code snapshot/create}: the new snapshot's id. */
    public record Created(UUID id) implements Reply {
    }

    /** {@code snapshot/collect}: the live snapshots' ids, in creation order. */
    public record SnapshotIds(List<UUID> ids) implements Reply {
        public SnapshotIds {
            ids = List.copyOf(ids);
        }
    }

    /** {@code snapshot/collect-images}: the images of a taken snapshot, in device order. */
    public record Images(List<Image> images) implements Reply {
        public Images {
            images = List.copyOf(images);
        }
    }

    /** An image in {@link Images}; {@code uri} may be null. */
    public record Image(String device, String image, long sizeBytes, String uri) {
    }

    /** {@code snapshot/wait-event}: the event taken. */
    public record WaitEvent(Event event) implements Reply {
    }

    /**
     * A snapshot event; {@code name} tells which: {@code low_free_space} (code 0), {@code corrupted}
     * (code 1) or {@code generation_reset} (code 2). {@code timeNanos} is the daemon's monotonic clock
     * when it was raised.
     */
    @JsonTypeInfo(use = JsonTypeInfo.Id.NAME, include = JsonTypeInfo.As.EXISTING_PROPERTY, property = "name",
            visible = true)
    @JsonSubTypes({@JsonSubTypes.Type(value = LowFreeSpace.class, name = LowFreeSpace.NAME),
            @JsonSubTypes.Type(value = Corrupted.class, name = Corrupted.NAME),
            @JsonSubTypes.Type(value = GenerationReset.class, name = GenerationReset.NAME)})
    public sealed interface Event {
        int code();

        String name();

        long timeNanos();
    }

    /** The difference storage is running out: append {@code requestedSectors} more. */
    public record LowFreeSpace(int code, String name, long timeNanos, long requestedSectors) implements Event {
        public static final String NAME = "low_free_space";
    }

    /**
     * A device's copy-on-write failed: the snapshot is corrupted.
     *
     * @param errno     the failure's errno number (28 ENOSPC: the storage overflowed)
     * @param errnoName its name, or null if it has none here
     */
    public record Corrupted(int code, String name, long timeNanos, String device, int errno, String errnoName)
            implements Event {
        public static final String NAME = "corrupted";
    }

    /**
     * The CBT generation of a device of the snapshot was reset for a reason other than a new tracker
     * (a restart found its state corrupted, the device was resized, ...): the next backup of the
     * device must be a full one.
     *
     * @param generationId the new generation
     * @param reason       a {@link Tracker#generationReason()} name
     * @param detail       what exactly happened
     */
    public record GenerationReset(int code, String name, long timeNanos, String device, UUID generationId, String reason,
                                  String detail) implements Event {
        public static final String NAME = "generation_reset";
    }

    /** {@code agent/start}: the job's id. */
    public record AgentJob(UUID id) implements Reply {
    }

    /**
     * {@code agent/wait}: the job's output since the previous wait (UTF-8 text, possibly empty), and
     * once it has ended its exit status (the tool's, docs/cli.md); the job is forgotten after the
     * wait that reports its exit status.
     */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    public record AgentOutput(String stdout, String stderr, Integer exitStatus) implements Reply {
    }
}
