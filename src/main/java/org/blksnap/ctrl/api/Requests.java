package org.blksnap.ctrl.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonSetter;
import com.fasterxml.jackson.annotation.Nulls;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
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

    /** {@code devices}: the devices served, and those registered whose backing store could not be opened. */
    public record DeviceList() implements Request<Replies.Devices> {
    }

    /**
     * {@code device/add}: serves a file or block device as a new device from now on, and keeps it
     * in the daemon's registry so that it is served again after a restart.
     *
     * @param name the device (and NBD export) name; whether it is a valid, free name is the engine's
     *             to judge
     * @param path the backing file or block device
     * @param size optional: create the file, sparse, with this size if it does not exist; if it
     *             exists, its size must be this
     * @param readOnly optional, false when absent or null: serve it read-only over NBD (kept in the registry)
     */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    public record DeviceAdd(@Required String name, @Required AbsolutePath path, Size size, Boolean readOnly)
            implements Request<Replies.Device> {
        /** What the text form looks like, for messages. */
        public static final String FORM = "NAME=PATH[:SIZE][:ro]";
        /** The suffix of the text form that makes the device read-only. */
        public static final String READ_ONLY_SUFFIX = ":ro";

        /** A writable device. */
        public DeviceAdd(String name, AbsolutePath path, Size size) {
            this(name, path, size, null);
        }

        /** Whether the device is served read-only. */
        public boolean readOnlyRequested() {
            return Boolean.TRUE.equals(readOnly);
        }

        /**
         * Parses {@code NAME=PATH[:SIZE][:ro]}, the form of {@code blksnapd --device} and of
         * {@code blksnap device add}: a final {@code :ro} serves the device read-only; the size is what
         * follows the last ':' before it (K/M/G/T, see {@link Sizes}) when that starts with a digit and
         * holds no '/', so a path may contain ':' ({@code /mnt/a:b/d.img}, {@code /srv/vm:old.img}); a
         * path whose last ':' is followed by a digit ({@code /srv/vm:1.img}) reads as a size and is
         * refused naming it (give such a file through a symbolic link); spaces around the name and the path are dropped; a relative path is resolved against
         * {@code base}.
         *
         * @param base an absolute directory (the caller's working directory)
         * @throws InvalidValueException if the text has another form, or the size is malformed
         */
        public static DeviceAdd parse(String text, Path base) {
            int eq = text.indexOf('=');
            String name = eq < 0 ? "" : text.substring(0, eq).trim();
            String rest = eq < 0 ? "" : text.substring(eq + 1).trim();
            Boolean readOnly = null;
            if (rest.endsWith(READ_ONLY_SUFFIX)) {
                readOnly = true;
                rest = rest.substring(0, rest.length() - READ_ONLY_SUFFIX.length()).trim();
            }
            Size size = null;
            int colon = rest.lastIndexOf(':');
            String after = colon < 0 ? "" : rest.substring(colon + 1).trim();
            if (colon >= 0 && !name.isEmpty() && (after.isEmpty() || Character.isDigit(after.charAt(0)))
                    && after.indexOf('/') < 0) {
                size = new Size(Sizes.parseBytes("size of device " + name, rest.substring(colon + 1)));
                rest = rest.substring(0, colon).trim();
            }
            if (name.isEmpty() || rest.isEmpty()) {
                throw new InvalidValueException(text, "must be " + FORM);
            }
            Path p;
            try {
                p = Path.of(rest);
            } catch (InvalidPathException e) {
                throw new InvalidValueException(text, "must be " + FORM + " with a valid path: " + e.getReason());
            }
            return new DeviceAdd(name, new AbsolutePath(p.isAbsolute() ? p : base.resolve(p)), size, readOnly);
        }

        @Override
        public String toString() {
            return name + "=" + path + (size == null ? "" : ":" + Sizes.format(size.bytes()))
                    + (readOnlyRequested() ? READ_ONLY_SUFFIX : "");
        }
    }

    /**
     * {@code device/remove}: stops serving a device (its NBD clients are disconnected, its tracker
     * goes with it) and drops it from the daemon's registry. The backing store is left as it is.
     *
     * @param force optional, false when absent or null: remove it even while it is in a snapshot
     *              (the snapshot is then corrupted, as when a disk is pulled out); without it, a
     *              device in a snapshot is refused with EBUSY
     */
    public record DeviceRemove(@Required String name, @JsonSetter(nulls = Nulls.AS_EMPTY) boolean force)
            implements Request<Replies.Done> {
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

    /**
     * {@code snapshot/create}: a snapshot of these devices.
     *
     * @param leaseSeconds optional: the daemon destroys the snapshot when no {@code snapshot/renew} (or
     *                     {@code snapshot/wait-event}) of it came for this many seconds, so one whose
     *                     creator was killed does not hold its storage and copy-on-write cost until
     *                     someone notices; absent: it lives until destroyed, as upstream
     */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    public record SnapshotCreate(@Required List<String> devices, Long leaseSeconds) implements Request<Replies.Created> {
        public SnapshotCreate {
            devices = List.copyOf(devices);
        }

        /** A snapshot without a lease. */
        public SnapshotCreate(List<String> devices) {
            this(devices, null);
        }
    }

    /** {@code snapshot/renew}: restarts the lease of a snapshot created with one. */
    public record SnapshotRenew(@Required UUID id) implements Request<Replies.Done> {
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

    /**
     * {@code agent/start}: runs one {@code blksnap backup} in the daemon's resident agent (a warm
     * JVM), as the tool would run it with these arguments; its output is collected for
     * {@code agent/wait}. Only root or the daemon's own user may start one (EPERM otherwise).
     *
     * @param args         the tool's arguments, the command first; only {@code backup} is accepted
     *                     (EINVAL otherwise); paths in them must be absolute (the daemon has
     *                     another working directory)
     * @param terminal     optional: the caller's stderr is a terminal (progress as a line rewritten in place)
     * @param launchedAt   optional: when the caller's tool started, in seconds since the epoch
     *                     (bash's {@code $EPOCHREALTIME}), for the backup's {@code jvmStartSeconds}
     * @param leaseSeconds optional: the job is cancelled (its snapshot destroyed, no point written)
     *                     when no {@code agent/wait} of it came for this many seconds (default 60)
     */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    public record AgentStart(@Required List<String> args, Boolean terminal, String launchedAt, Long leaseSeconds)
            implements Request<Replies.AgentJob> {
        public AgentStart {
            args = List.copyOf(args);
        }
    }

    /**
     * {@code agent/wait}: waits up to {@code timeoutMs} milliseconds for output of an agent job or
     * its end; renews the job's lease. ESRCH when no such job is known (it ended and was collected,
     * or its lease ran out).
     */
    public record AgentWait(@Required UUID id, long timeoutMs) implements Request<Replies.AgentOutput> {
    }

    /** {@code agent/cancel}: stops an agent job (its snapshot is destroyed and no point is written). */
    public record AgentCancel(@Required UUID id) implements Request<Replies.Done> {
    }
}
