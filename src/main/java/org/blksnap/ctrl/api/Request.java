package org.blksnap.ctrl.api;

/**
 * The body of a request to one {@link Operation}; {@code R} is the reply it gets. One record per
 * operation, in {@link Requests}; the table in {@link Operation} maps each to its path.
 *
 * @param <R> the reply type
 */
public sealed interface Request<R extends Reply> permits Requests.Version, Requests.Params, Requests.ParamsGet,
        Requests.ParamsSet, Requests.Status, Requests.DeviceList, Requests.DeviceAdd, Requests.DeviceRemove,
        Requests.TrackerCollect, Requests.ReadCbtMap,
        Requests.MarkDirty, Requests.TrackerRemove, Requests.SnapshotCreate, Requests.SnapshotRenew, Requests.AppendStorage, Requests.Take,
        Requests.SnapshotCollect, Requests.CollectImages, Requests.WaitEvent, Requests.Destroy,
        Requests.AgentStart, Requests.AgentWait, Requests.AgentCancel {
}
