package org.blksnap.cli;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import org.blksnap.ctrl.api.Replies;
import org.blksnap.ctrl.api.Sizes;

/**
 * The text form of every reply type and of the tool's own results: what {@code blksnap} prints
 * without {@code --json}. One method per type; a form with several lines joins them with newlines;
 * an empty form prints nothing. Stateless.
 */
final class TextForms {
    private TextForms() {
    }

    /** {@code 1.0.0.0}. */
    static String version(Replies.Version v) {
        return v.version();
    }

    /** {@code NAME=VALUE} per parameter, in the module's order. */
    static String params(Replies.Params p) {
        return lines(p.params().entrySet(), e -> e.getKey() + "=" + e.getValue());
    }

    /** The value alone ({@code params NAME}). */
    static String paramValue(Replies.Param p) {
        return Long.toString(p.value());
    }

    /** {@code NAME=VALUE} ({@code params NAME=VALUE}). */
    static String paramAssignment(Replies.Param p) {
        return p.name() + "=" + p.value();
    }

    /**
     * {@code NAME SIZE_BYTES tracked|untracked|unavailable URI|- ORIGIN|- PATH|-} per device; the path
     * is last, so it may hold spaces, and the first four columns are what they always were.
     */
    static String devices(Replies.Devices d) {
        return lines(d.devices(), TextForms::device);
    }

    /** One device, as a line of {@link #devices}. */
    static String device(Replies.Device x) {
        String state = x.unavailable() != null ? "unavailable" : x.tracked() ? "tracked" : "untracked";
        return x.name() + " " + x.sizeBytes() + " " + state + " " + orDash(x.uri()) + " " + orDash(x.origin()) + " "
                + orDash(x.path()) + (Boolean.TRUE.equals(x.readOnly()) ? " read-only" : "");
    }

    /**
     * {@code NAME generation= snap_number= block_size= block_count= capacity= reason=} per tracker,
     * and {@code detail="..."} when there is one.
     */
    static String trackers(Replies.Trackers t) {
        return lines(t.trackers(), x -> x.device() + " generation=" + x.generationId() + " snap_number=" + x.snapNumber()
                + " block_size=" + x.blockSizeBytes() + " block_count=" + x.blockCount()
                + " capacity=" + x.capacityBytes() + " reason=" + x.generationReason()
                + (x.generationDetail() == null || x.generationDetail().isEmpty() ? ""
                : " detail=\"" + x.generationDetail() + "\""));
    }

    /** Nothing: the operation worked. */
    static String done(Replies.Done d) {
        return "";
    }

    /** The new snapshot's id alone. */
    static String created(Replies.Created c) {
        return c.id().toString();
    }

    /** One id per line. */
    static String snapshotIds(Replies.SnapshotIds ids) {
        return lines(ids.ids(), Object::toString);
    }

    /** {@code DEVICE IMAGE URI|-} per image. */
    static String images(Replies.Images images) {
        return lines(images.images(), i -> i.device() + " " + i.image() + " " + orDash(i.uri()));
    }

    /** The event taken. */
    static String waitEvent(Replies.WaitEvent w) {
        return event(w.event());
    }

    /**
     * {@code low_free_space requested_sectors=N}, {@code corrupted device=D errno=N (NAME)} or
     * {@code generation_reset device=D generation=G reason=R detail="..."}.
     */
    static String event(Replies.Event ev) {
        return switch (ev) {
            case Replies.LowFreeSpace l -> l.name() + " requested_sectors=" + l.requestedSectors();
            case Replies.Corrupted c -> c.name() + " device=" + c.device() + " errno=" + c.errno() + " ("
                    + (c.errnoName() == null ? "?" : c.errnoName()) + ")";
            case Replies.GenerationReset g -> g.name() + " device=" + g.device() + " generation=" + g.generationId()
                    + " reason=" + g.reason() + " detail=\"" + g.detail() + "\"";
        };
    }

    /** {@code N blocks of DEVICE from block O written to FILE}. */
    static String cbtMapWritten(Commands.TrackerCmd.CbtMapWritten w) {
        return w.length() + " blocks of " + w.device() + " from block " + w.offset() + " written to " + w.file();
    }

    /** One line of {@code snapshot stretch}. */
    static String stretch(Stretch.Report r) {
        return switch (r) {
            case Stretch.Appended a -> "appended " + a.file() + " (" + Sizes.format(a.sizeBytes())
                    + (a.sizeBytes() < a.requestedBytes() ? " of the " + Sizes.format(a.requestedBytes())
                    + " asked for: no room for more there now" : "") + "), total " + Sizes.format(a.allocatedBytes());
            case Stretch.GrowFailed g -> "cannot grow the storage by " + Sizes.format(g.sizeBytes()) + " at " + g.file()
                    + ": " + g.errnoName() + " (" + g.errno() + "): " + g.message()
                    + "; retrying while the snapshot lives, it overflows if its storage fills up";
            case Stretch.LimitReached l -> "limit " + Sizes.format(l.limitBytes()) + " reached; stopped growing the storage";
            case Stretch.EventSeen e -> event(e.event());
            case Stretch.SnapshotGone g -> "snapshot " + g.id() + " is gone; stretch done (" + g.files() + " file(s), "
                    + Sizes.format(g.allocatedBytes()) + " appended)";
        };
    }

    private static <T> String lines(Iterable<T> items, Function<T, String> line) {
        List<String> out = new ArrayList<>();
        items.forEach(i -> out.add(line.apply(i)));
        return String.join("\n", out);
    }

    private static String orDash(String s) {
        return s == null ? "-" : s;
    }
}
