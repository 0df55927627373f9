package org.blksnap.ctrl.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonSetter;
import com.fasterxml.jackson.annotation.Nulls;
import java.util.List;
import java.util.UUID;

/**
 * The request bodies, one record per {@link Operation}; a component is a JSON field of the same
 * name. {@link Required} components must be present and not null; numbers must be present unless
 * their component says otherwise; optional lists may be absent or null (none). Only the form is
 * checked here: what a name, a path or a number means is the engine's business.
 */
public final class Requests {
    private Requests() {
    }

    /** {@code version}: no arguments. */
    public record Version() implements Request<Replies.Version> {
    }

    /** {@code params}: all module parameters. */
    public record Params() implements Request<Replies.Params> {
    }

    /** {@code params/get}: one parameter by its kernel name. */
    public record ParamsGet(@Required String name) implements Request<Replies.Param> {
    }

    /** {@code params/set}: sets one parameter. */
    public record ParamsSet(@Required String name, long value) implements Request<Replies.Param> {
        /**
         * Parses {@code NAME=VALUE} (spaces around either are dropped).
         *
         * @throws InvalidValueException if there is no name, or the value is not a whole number
         */
        public static ParamsSet parse(String assignment) {
            int eq = assignment.indexOf('=');
            if (eq <= 0) {
                throw new InvalidValueException(assignment, "must be NAME=VALUE");
            }
            String name = assignment.substring(0, eq).trim();
            String value = assignment.substring(eq + 1).trim();
            try {
                return new ParamsSet(name, Long.parseLong(value));
            } catch (NumberFormatException e) {
                throw new InvalidValueException("value of " + name + " ('" + value + "') is not a whole number");
            }
        }
    }

    /** {@code status}: everything. */
    public record Status() implements Request<Replies.Status> {
    }

    /** {@code devices}: the devices served. */
    public record DeviceList() implements Request<Replies.Devices> {
    }

    /** {@code tracker/collect}: CBT info of every tracked device. */
    public record TrackerCollect() implements Request<Replies.Trackers> {
    }

    /**
     * {@code tracker/read-cbt-map}: a piece of a device's CBT read map.
     *
     * @param offset first block; optional, 0 when absent or null
     * @param length blocks to read, 1 to {@link #MAX_LENGTH_BLOCKS} (the reply's base64 must stay
     *               well below the largest body a client reads)
     */
    public record ReadCbtMap(@Required String device, @JsonSetter(nulls = Nulls.AS_EMPTY) long offset, long length)
            implements Request<Replies.CbtMapPiece> {
        /** Largest piece one request may read, in blocks (= bytes of the map). */
        public static final int MAX_LENGTH_BLOCKS = 16 << 20;

        /** @throws InvalidValueException if {@code length} is not 1 to {@link #MAX_LENGTH_BLOCKS} */
        public ReadCbtMap {
            if (length <= 0 || length > MAX_LENGTH_BLOCKS) {
                throw new InvalidValueException("field 'length' (" + length + " blocks) must be > 0 and <= "
                        + MAX_LENGTH_BLOCKS + " (the largest piece one request may read)");
            }
        }
    }

    /** {@code tracker/mark-dirty}: marks sector ranges of a device or image changed. */
    public record MarkDirty(@Required String device, @Required List<Range> ranges) implements Request<Replies.Done> {
        /** @throws InvalidValueException if there is no range */
        public MarkDirty {
            ranges = List.copyOf(ranges);
            if (ranges.isEmpty()) {
                throw new InvalidValueException("field 'ranges' must hold at least one range");
            }
        }
    }

    /** {@code tracker/remove}: detaches a device's tracker. */
    public record TrackerRemove(@Required String device) implements Request<Replies.Done> {
    }

    /** {@code snapshot/create}: a snapshot of these devices. */
    public record SnapshotCreate(@Required List<String> devices) implements Request<Replies.Created> {
        public SnapshotCreate {
            devices = List.copyOf(devices);
        }
    }

    /**
     * {@code snapshot/append-storage}: adds a file or block device to a snapshot's difference storage.
     *
     * @param size   optional: create the file with this size (preallocated) if it does not exist
     * @param ranges optional: sectors of the file or device to use; none: all of it
     */
    @JsonInclude(JsonInclude.Include.NON_EMPTY)
    public record AppendStorage(@Required UUID id, @Required AbsolutePath path, Size size, List<Range> ranges)
            implements Request<Replies.Done> {
        public AppendStorage {
            ranges = ranges == null ? List.of() : List.copyOf(ranges);
        }
    }

    /**
     * {@code snapshot/take}.
     *
     * @param freeze optional: mount points to freeze around the take barrier
     */
    @JsonInclude(JsonInclude.Include.NON_EMPTY)
    public record Take(@Required UUID id, List<AbsolutePath> freeze) implements Request<Replies.Done> {
        public Take {
            freeze = freeze == null ? List.of() : List.copyOf(freeze);
        }
    }

    /** {@code snapshot/collect}: ids of the live snapshots. */
    public record SnapshotCollect() implements Request<Replies.SnapshotIds> {
    }

    /** {@code snapshot/collect-images}: images of a taken snapshot. */
    public record CollectImages(@Required UUID id) implements Request<Replies.Images> {
    }

    /** {@code snapshot/wait-event}: waits up to {@code timeoutMs} milliseconds for the next event. */
    public record WaitEvent(@Required UUID id, long timeoutMs) implements Request<Replies.WaitEvent> {
    }

    /** {@code snapshot/destroy}. */
    public record Destroy(@Required UUID id) implements Request<Replies.Done> {
    }
}
