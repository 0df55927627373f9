package org.blksnap.ctrl.api;

import java.util.Arrays;
import java.util.Optional;

/**
 * The operations of the control API, one per module ioctl (plus params, status, the devices
 * served: list, add, remove, and the resident backup agent: start, wait, cancel), each at {@code /v1/<path>} with its request and reply record. Every operation accepts
 * {@code POST} with a JSON object body; those whose request has no fields also accept {@code GET}.
 * The daemon and the tool share this table, so they cannot disagree on a path or a body.
 */
public enum Operation {
    VERSION("version", Requests.Version.class, Replies.Version.class),
    PARAMS("params", Requests.Params.class, Replies.Params.class),
    PARAMS_GET("params/get", Requests.ParamsGet.class, Replies.Param.class),
    PARAMS_SET("params/set", Requests.ParamsSet.class, Replies.Param.class),
    STATUS("status", Requests.Status.class, Replies.Status.class),
    DEVICE_LIST("devices", Requests.DeviceList.class, Replies.Devices.class),
    DEVICE_ADD("device/add", Requests.DeviceAdd.class, Replies.Device.class),
    DEVICE_REMOVE("device/remove", Requests.DeviceRemove.class, Replies.Done.class),
    TRACKER_COLLECT("tracker/collect", Requests.TrackerCollect.class, Replies.Trackers.class),
    TRACKER_READ_CBT_MAP("tracker/read-cbt-map", Requests.ReadCbtMap.class, Replies.CbtMapPiece.class),
    TRACKER_MARK_DIRTY("tracker/mark-dirty", Requests.MarkDirty.class, Replies.Done.class),
    TRACKER_REMOVE("tracker/remove", Requests.TrackerRemove.class, Replies.Done.class),
    SNAPSHOT_CREATE("snapshot/create", Requests.SnapshotCreate.class, Replies.Created.class),
    SNAPSHOT_APPEND_STORAGE("snapshot/append-storage", Requests.AppendStorage.class, Replies.Done.class),
    SNAPSHOT_TAKE("snapshot/take", Requests.Take.class, Replies.Done.class),
    SNAPSHOT_COLLECT("snapshot/collect", Requests.SnapshotCollect.class, Replies.SnapshotIds.class),
    SNAPSHOT_COLLECT_IMAGES("snapshot/collect-images", Requests.CollectImages.class, Replies.Images.class),
    SNAPSHOT_WAIT_EVENT("snapshot/wait-event", Requests.WaitEvent.class, Replies.WaitEvent.class),
    SNAPSHOT_DESTROY("snapshot/destroy", Requests.Destroy.class, Replies.Done.class),
    SNAPSHOT_RENEW("snapshot/renew", Requests.SnapshotRenew.class, Replies.Done.class),
    AGENT_START("agent/start", Requests.AgentStart.class, Replies.AgentJob.class),
    AGENT_WAIT("agent/wait", Requests.AgentWait.class, Replies.AgentOutput.class),
    AGENT_CANCEL("agent/cancel", Requests.AgentCancel.class, Replies.Done.class);

    /** Prefix of every path. */
    public static final String PREFIX = "/v1/";

    private final String path;
    private final Class<? extends Request<?>> requestType;
    private final Class<? extends Reply> replyType;

    Operation(String path, Class<? extends Request<?>> requestType, Class<? extends Reply> replyType) {
        this.path = path;
        this.requestType = requestType;
        this.replyType = replyType;
    }

    /** The full path, for example {@code /v1/snapshot/take}. */
    public String path() {
        return PREFIX + path;
    }

    /** Whether {@code GET} (no body) is accepted as well as {@code POST}: the request has no fields. */
    public boolean getAllowed() {
        return requestType.getRecordComponents().length == 0;
    }

    /** The record a request body is read into. */
    public Class<? extends Request<?>> requestType() {
        return requestType;
    }

    /** The record a successful answer is read into. */
    public Class<? extends Reply> replyType() {
        return replyType;
    }

    /** The operation at that full path. */
    public static Optional<Operation> ofPath(String fullPath) {
        return Arrays.stream(values()).filter(o -> o.path().equals(fullPath)).findFirst();
    }

    /** The operation a request is for. */
    public static Operation of(Request<?> request) {
        for (Operation o : values()) {
            if (o.requestType == request.getClass()) {
                return o;
            }
        }
        throw new AssertionError("no operation for " + request.getClass());
    }
}
