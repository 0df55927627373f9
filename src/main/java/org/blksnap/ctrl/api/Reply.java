package org.blksnap.ctrl.api;

/** The body of a successful answer; one record per kind of answer, in {@link Replies}. */
public sealed interface Reply permits Replies.Version, Replies.Params, Replies.Param, Replies.Status,
        Replies.Devices, Replies.Device, Replies.Trackers, Replies.CbtMapPiece, Replies.Done, Replies.Created, Replies.SnapshotIds,
        Replies.Images, Replies.WaitEvent, Replies.AgentJob, Replies.AgentOutput {
}
