package org.blksnap.ctrl;

import java.util.Arrays;
import java.util.Optional;

/**
 * The operations of the control API, one per module ioctl (plus params, status and the device
 * list), each at {@code /v1/<path>}. Every operation accepts {@code POST} with a JSON object body;
 * those without arguments also accept {@code GET}. The client and the server share this table, so
 * they cannot disagree on a path.
 */
public enum Operation {
    VERSION("version", true),
    PARAMS("params", true),
    PARAMS_GET("params/get", false),
    PARAMS_SET("params/set", false),
    STATUS("status", true),
    DEVICE_LIST("devices", true),
    TRACKER_COLLECT("tracker/collect", true),
    TRACKER_READ_CBT_MAP("tracker/read-cbt-map", false),
    TRACKER_MARK_DIRTY("tracker/mark-dirty", false),
    TRACKER_REMOVE("tracker/remove", false),
    SNAPSHOT_CREATE("snapshot/create", false),
    SNAPSHOT_APPEND_STORAGE("snapshot/append-storage", false),
    SNAPSHOT_TAKE("snapshot/take", false),
    SNAPSHOT_COLLECT("snapshot/collect", true),
    SNAPSHOT_COLLECT_IMAGES("snapshot/collect-images", false),
    SNAPSHOT_WAIT_EVENT("snapshot/wait-event", false),
    SNAPSHOT_DESTROY("snapshot/destroy", false);

    /** Prefix of every path. */
    public static final String PREFIX = "/v1/";

    private final String path;
    private final boolean getAllowed;

    Operation(String path, boolean getAllowed) {
        this.path = path;
        this.getAllowed = getAllowed;
    }

    /** The full path, for example {@code /v1/snapshot/take}. */
    public String path() {
        return PREFIX + path;
    }

    /** Whether {@code GET} (no body) is accepted as well as {@code POST}. */
    public boolean getAllowed() {
        return getAllowed;
    }

    /** The operation at that full path. */
    public static Optional<Operation> ofPath(String fullPath) {
        return Arrays.stream(values()).filter(o -> o.path().equals(fullPath)).findFirst();
    }
}
