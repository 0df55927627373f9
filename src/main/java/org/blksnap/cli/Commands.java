package org.blksnap.cli;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.function.Function;
import org.blksnap.backup.Point;
import org.blksnap.backup.Repository;
import org.blksnap.ctrl.api.AbsolutePath;
import org.blksnap.ctrl.api.Range;
import org.blksnap.ctrl.api.Replies;
import org.blksnap.ctrl.api.Reply;
import org.blksnap.ctrl.api.Request;
import org.blksnap.ctrl.api.Requests;
import org.blksnap.ctrl.api.Size;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine;

/**
 * The commands of the tool, one class each; the upstream v1 verbs reach the same classes
 * ({@link V1Verbs}). A command builds its request from its options, calls the daemon and prints the
 * reply through its text form ({@link TextForms}). Ids, sizes and ranges are converted by the wire
 * contract's own parsers (registered in {@link Main}), so a malformed one is a usage error before
 * anything is sent.
 */
final class Commands {
    private Commands() {
    }

    /** What every command has: the session of the run ({@link Main#cli}). */
    abstract static class Base implements Callable<Integer> {
        @Spec
        CommandSpec spec;

        Cli cli() {
            return ((Tool) spec.root().userObject()).cli();
        }

        /** Sends the request, prints the reply in {@code textForm} (or as JSON) and succeeds. */
        <R extends Reply> Integer show(Request<R> request, Function<? super R, String> textForm) throws Exception {
            Cli cli = cli();
            cli.print(cli.call(request), textForm);
            return ExitCodes.OK;
        }

        /** A usage error of this command, for checks picocli cannot express. */
        CommandLine.ParameterException usage(String message) {
            return new CommandLine.ParameterException(spec.commandLine(), message);
        }
    }

    @Command(name = "version", description = "Print the engine version.")
    static final class VersionCmd extends Base {
        @Override
        public Integer call() throws Exception {
            return show(new Requests.Version(), TextForms::version);
        }
    }

    @Command(name = "params", description = "Show all parameters, one (NAME) or set one (NAME=VALUE).")
    static final class ParamsCmd extends Base {
        @Parameters(arity = "0..1", paramLabel = "NAME[=VALUE]",
                description = "a parameter by its kernel name (shows it), or NAME=VALUE (sets it)")
        String arg;

        @Override
        public Integer call() throws Exception {
            if (arg == null) {
                return show(new Requests.Params(), TextForms::params);
            }
            if (arg.indexOf('=') < 0) {
                return show(new Requests.ParamsGet(arg), TextForms::paramValue);
            }
            return show(Requests.ParamsSet.parse(arg), TextForms::paramAssignment);
        }
    }

    @Command(name = "status", description = {"Show devices, trackers (generation, last snapshot) and snapshots (age,"
            + " difference storage use as a bar, images) at a glance.",
            "With --repo, also the newest backup point of each device in that repository."})
    static final class StatusCmd extends Base {
        @Option(names = "--repo", paramLabel = "DIR",
                description = "a backup repository: show the newest point of each device in it")
        Path repo;
        @Option(names = "--key-file", paramLabel = "FILE",
                description = "the key of an encrypted --repo (default: $" + org.blksnap.backup.RepositoryKey.KEY_FILE_ENV + ")")
        Path keyFile;

        /** {@code status --json --repo}: the daemon's status, extended with the newest point per device. */
        record WithBackups(String version, Map<String, Long> params, List<Replies.DeviceStatus> devices,
                           List<Replies.SnapshotStatus> snapshots, String repo, List<StatusView.LastBackup> lastBackups) {
        }

        @Override
        public Integer call() throws Exception {
            Cli cli = cli();
            Replies.Status s = cli.call(new Requests.Status());
            if (repo == null) {
                cli.print(s, x -> StatusView.render(x, cli.statusOptions(null, Map.of())));
                return ExitCodes.OK;
            }
            Path dir = repo.toAbsolutePath();
            Map<String, StatusView.LastBackup> last = new TreeMap<>();
            org.blksnap.backup.RepositoryKey key = BackupCommands.RepoOptions.key(keyFile, (Tool) spec.root().userObject());
            try (Repository r = Repository.openForReading(new org.blksnap.backup.RepositoryLocation.Directory(dir), key)) {
                for (Point p : r.points()) { // oldest first: the newest of each device stays
                    last.put(p.device(), new StatusView.LastBackup(p.device(), p.id(), p.time(), p.kind(), p.generation(),
                            p.snapNumber()));
                }
            }
            cli.print(new WithBackups(s.version(), s.params(), s.devices(), s.snapshots(), dir.toString(),
                    List.copyOf(last.values())), x -> StatusView.render(s, cli.statusOptions(x.repo(), last)));
            return ExitCodes.OK;
        }
    }

    @Command(name = "device", description = "Devices served: list, add and remove them at run time.",
            subcommands = {DeviceCmd.ListCmd.class, DeviceCmd.AddCmd.class, DeviceCmd.RemoveCmd.class})
    static final class DeviceCmd {
        @Command(name = "list", description = "List devices: NAME SIZE tracked|untracked|unavailable URI ORIGIN PATH.")
        static final class ListCmd extends Base {
            @Override
            public Integer call() throws Exception {
                return show(new Requests.DeviceList(), TextForms::devices);
            }
        }

        @Command(name = "add", description = {"Serve a file or block device as a new device, now and after restarts.",
                "A missing file is created sparse at SIZE (K/M/G/T); an existing one must have that size if given."})
        static final class AddCmd extends Base {
            @Parameters(paramLabel = Requests.DeviceAdd.FORM, description = "as blksnapd --device; a relative PATH"
                    + " is taken from the current directory")
            String spec;

            @Override
            public Integer call() throws Exception {
                return show(Requests.DeviceAdd.parse(spec, Path.of("").toAbsolutePath()), TextForms::device);
            }
        }

        @Command(name = "remove", description = {"Stop serving a device: its NBD clients are disconnected, its tracker"
                + " goes; the backing store stays.", "A device given by --device comes back at the next start."})
        static final class RemoveCmd extends Base {
            @Parameters(paramLabel = "NAME", description = "the device to remove")
            String name;
            @Option(names = "--force",
                    description = "remove it even while it is in a snapshot (which is then corrupted)")
            boolean force;

            @Override
            public Integer call() throws Exception {
                return show(new Requests.DeviceRemove(name, force), TextForms::done);
            }
        }
    }

    @Command(name = "tracker", description = "Change block tracking.",
            subcommands = {TrackerCmd.Collect.class, TrackerCmd.ReadCbtMap.class, TrackerCmd.MarkDirty.class,
                    TrackerCmd.Remove.class})
    static final class TrackerCmd {
        @Command(name = "collect", description = "CBT info of every tracked device.")
        static final class Collect extends Base {
            @Override
            public Integer call() throws Exception {
                return show(new Requests.TrackerCollect(), TextForms::trackers);
            }
        }

        /** What {@code read-cbt-map} wrote: {@code length} bytes of the map from block {@code offset}. */
        record CbtMapWritten(String device, String file, long offset, long length) {
        }

        @Command(name = "read-cbt-map", description = "Write the CBT read map (one byte per block) to a file.")
        static final class ReadCbtMap extends Base {
            /** Blocks asked for per request (well below the wire's largest piece). */
            static final int PIECE_BLOCKS = 1 << 20;

            @Option(names = "--device", required = true, paramLabel = "NAME", description = "the tracked device")
            String device;
            @Option(names = "--file", required = true, paramLabel = "OUT",
                    description = "file to write the map to (one byte per tracking block)")
            Path file;
            @Option(names = "--offset", paramLabel = "BLOCKS", defaultValue = "0",
                    description = "first tracking block to read (default 0)")
            long offset;
            @Option(names = "--length", paramLabel = "BLOCKS", description = "default: to the end of the map")
            Long length;

            @Override
            public Integer call() throws Exception {
                if (offset < 0 || (length != null && length < 0)) {
                    throw usage("--offset and --length must be >= 0");
                }
                Cli cli = cli();
                byte[] map = read(cli, length != null ? length : remaining(cli));
                try {
                    Files.write(file, map, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                            StandardOpenOption.WRITE);
                } catch (IOException e) {
                    throw new Cli.LocalIoException("cannot write the CBT map to " + file + ": " + e.getMessage(), e);
                }
                cli.print(new CbtMapWritten(device, file.toAbsolutePath().toString(), offset, map.length),
                        TextForms::cbtMapWritten);
                return ExitCodes.OK;
            }

            /** Blocks from the offset to the end of the device's map, or -1 if it has no tracker (read until short). */
            private long remaining(Cli cli) throws Exception {
                for (Replies.Tracker t : cli.call(new Requests.TrackerCollect()).trackers()) {
                    if (t.device().equals(device)) {
                        return Math.max(0, t.blockCount() - offset);
                    }
                }
                return -1;
            }

            /** Reads {@code total} blocks (all to the end when negative) in pieces. */
            private byte[] read(Cli cli, long total) throws Exception {
                ByteArrayOutputStream map = new ByteArrayOutputStream();
                long pos = offset;
                long remaining = total;
                while (total < 0 || remaining > 0) {
                    int piece = (int) (total < 0 ? PIECE_BLOCKS : Math.min(PIECE_BLOCKS, remaining));
                    byte[] data = cli.call(new Requests.ReadCbtMap(device, pos, piece)).data();
                    map.write(data);
                    pos += data.length;
                    remaining -= data.length;
                    if (data.length < piece) {
                        break;
                    }
                }
                return map.toByteArray();
            }
        }

        @Command(name = "mark-dirty", description = "Mark sector ranges changed (of a device or an image).")
        static final class MarkDirty extends Base {
            @Option(names = "--device", required = true, paramLabel = "NAME",
                    description = "the device, or one of its images")
            String device;
            @Option(names = "--range", required = true, paramLabel = "SECTOR:COUNT",
                    description = "SECTOR:COUNT in 512-byte sectors (repeatable)")
            List<Range> ranges = new ArrayList<>();

            @Override
            public Integer call() throws Exception {
                return show(new Requests.MarkDirty(device, ranges), TextForms::done);
            }
        }

        @Command(name = "remove", description = "Detach the tracker (its CBT history is lost).")
        static final class Remove extends Base {
            @Option(names = "--device", required = true, paramLabel = "NAME", description = "the tracked device")
            String device;

            @Override
            public Integer call() throws Exception {
                return show(new Requests.TrackerRemove(device), TextForms::done);
            }
        }
    }

    @Command(name = "snapshot", description = "Snapshots.",
            subcommands = {SnapshotCmd.Create.class, SnapshotCmd.AppendStorage.class, SnapshotCmd.Take.class,
                    SnapshotCmd.Collect.class, SnapshotCmd.Images.class, SnapshotCmd.WaitEvent.class,
                    SnapshotCmd.StretchCmd.class, SnapshotCmd.Renew.class, SnapshotCmd.Destroy.class})
    static final class SnapshotCmd {
        @Command(name = "create", description = "Create a snapshot of devices; prints its id.")
        static final class Create extends Base {
            @Option(names = "--device", required = true, paramLabel = "NAME",
                    description = "a device to include (repeatable; one coherent snapshot of all)")
            List<String> devices = new ArrayList<>();
            @Option(names = "--lease", paramLabel = "SECONDS", description = "the daemon destroys the snapshot when "
                    + "no 'snapshot renew' (or wait-event) of it came for this many seconds (default: no lease)")
            Long leaseSeconds;

            @Override
            public Integer call() throws Exception {
                return show(new Requests.SnapshotCreate(devices, leaseSeconds), TextForms::created);
            }
        }

        @Command(name = "renew", description = "Restart the lease of a snapshot created with --lease.")
        static final class Renew extends Base {
            @Option(names = "--id", required = true, description = "the snapshot id")
            UUID id;

            @Override
            public Integer call() throws Exception {
                return show(new Requests.SnapshotRenew(id), TextForms::done);
            }
        }

        @Command(name = "append-storage", description = "Add a file (created with --size if missing) or device "
                + "to the snapshot's difference storage.")
        static final class AppendStorage extends Base {
            @Option(names = "--id", required = true, description = "the snapshot id")
            UUID id;
            @Option(names = "--file", required = true, paramLabel = "PATH",
                    description = "a file or block device for the difference storage")
            Path file;
            @Option(names = "--size", paramLabel = "SIZE",
                    description = "create a missing file of this size (bytes, or K, M, G, T)")
            Size size;
            @Option(names = "--range", paramLabel = "SECTOR:COUNT",
                    description = "use only this part, SECTOR:COUNT in 512-byte sectors (repeatable)")
            List<Range> ranges = new ArrayList<>();

            @Override
            public Integer call() throws Exception {
                return show(new Requests.AppendStorage(id, AbsolutePath.resolve(file), size, ranges), TextForms::done);
            }
        }

        @Command(name = "take", description = "Take the snapshot (optionally freezing filesystems around it).")
        static final class Take extends Base {
            @Option(names = "--id", required = true, description = "the snapshot id")
            UUID id;
            @Option(names = "--freeze", paramLabel = "MOUNTPOINT",
                    description = "a mounted filesystem to freeze around the take (repeatable)")
            List<Path> freeze = new ArrayList<>();

            @Override
            public Integer call() throws Exception {
                List<AbsolutePath> mountPoints = freeze.stream().map(AbsolutePath::resolve).toList();
                return show(new Requests.Take(id, mountPoints), TextForms::done);
            }
        }

        @Command(name = "collect", description = "List snapshot ids.")
        static final class Collect extends Base {
            @Override
            public Integer call() throws Exception {
                return show(new Requests.SnapshotCollect(), TextForms::snapshotIds);
            }
        }

        @Command(name = "images", description = "Images of a taken snapshot: NAME IMAGE URI.")
        static final class Images extends Base {
            @Option(names = "--id", required = true, description = "the snapshot id")
            UUID id;

            @Override
            public Integer call() throws Exception {
                return show(new Requests.CollectImages(id), TextForms::images);
            }
        }

        @Command(name = "wait-event", description = "Wait for the snapshot's next event.")
        static final class WaitEvent extends Base {
            @Option(names = "--id", required = true, description = "the snapshot id")
            UUID id;
            @Option(names = "--timeout", required = true, paramLabel = "MS",
                    description = "how long to wait, in milliseconds")
            long timeoutMs;

            @Override
            public Integer call() throws Exception {
                return show(new Requests.WaitEvent(id, timeoutMs), TextForms::waitEvent);
            }
        }

        @Command(name = "stretch",
                description = "Grow the storage on low-space events until the snapshot is destroyed.")
        static final class StretchCmd extends Base {
            @Option(names = "--id", required = true, description = "the snapshot id")
            UUID id;
            @Option(names = "--dir", required = true, paramLabel = "DIR",
                    description = "directory in which storage files are created")
            Path dir;
            @Option(names = "--limit", required = true, paramLabel = "SIZE",
                    description = "stop adding storage at this total (bytes, or K, M, G, T)")
            Size limit;
            @Option(names = "--poll", paramLabel = "MS", defaultValue = "1000", hidden = true,
                    description = "poll interval when events are not used, in ms")
            long pollMs;

            @Override
            public Integer call() throws Exception {
                Path absDir = dir.toAbsolutePath().normalize();
                if (!Files.isDirectory(absDir)) {
                    throw usage("--dir " + dir + " is not a directory");
                }
                new Stretch(cli(), id, absDir, limit.bytes(), pollMs).run();
                return ExitCodes.OK;
            }
        }

        @Command(name = "destroy", description = "Destroy the snapshot (images go away; trackers stay).")
        static final class Destroy extends Base {
            @Option(names = "--id", required = true, description = "the snapshot id")
            UUID id;

            @Override
            public Integer call() throws Exception {
                return show(new Requests.Destroy(id), TextForms::done);
            }
        }
    }
}
