package org.blksnap.cli;

import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.Callable;
import org.blksnap.ctrl.Sizes;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.SectorRange;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import tools.jackson.databind.json.JsonMapper;

/**
 * The {@code blksnap} command-line tool: talks to blksnapd's control API. Exit codes: 0 success; the
 * errno number when the daemon reports an engine error (ESRCH 3, EBUSY 16, ...); 64 usage; 74 a local
 * file; 76 a broken answer; 111 the daemon is not reachable. See docs/cli.md.
 */
@Command(name = "blksnap", mixinStandardHelpOptions = true, scope = CommandLine.ScopeType.INHERIT, versionProvider = Main.ToolVersion.class,
        description = "Control blksnapd: change tracking, snapshots and snapshot images served over NBD.",
        footer = {"", "Exit status: 0 ok; the errno number of an engine error (ESRCH 3, ENOENT 2, EBUSY 16, "
                + "EINVAL 22, ...); 64 usage; 74 local file error; 76 bad answer; 111 daemon not reachable."},
        subcommands = {
                Main.VersionCmd.class, Main.ParamsCmd.class, Main.StatusCmd.class, Main.DeviceCmd.class,
                Main.TrackerCmd.class, Main.SnapshotCmd.class,
                V1Commands.SnapshotCreate.class, V1Commands.SnapshotAppendStorage.class, V1Commands.SnapshotTake.class,
                V1Commands.SnapshotCollect.class, V1Commands.SnapshotWaitEvent.class, V1Commands.SnapshotDestroy.class,
                V1Commands.StretchSnapshot.class, V1Commands.TrackerCollect.class, V1Commands.TrackerReadCbtMap.class,
                V1Commands.TrackerMarkDirtyBlock.class, V1Commands.TrackerRemove.class})
public final class Main {
    /** The control socket used when neither --control nor BLKSNAP_CONTROL is given. */
    public static final String DEFAULT_CONTROL = "blksnap-data/control.sock";

    @Option(names = "--control", paramLabel = "PATH",
            description = "control socket of blksnapd (default: $BLKSNAP_CONTROL, else ./" + DEFAULT_CONTROL + ")")
    Path control;

    @Option(names = "--json", description = "print machine-readable JSON")
    boolean json;

    private Map<String, String> env = System.getenv();
    private PrintWriter out;
    private PrintWriter err;
    private final JsonMapper mapper = JsonMapper.builder().build();

    static final class ToolVersion implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"blksnap tool 1.0.0 (control API v1)"};
        }
    }

    public static void main(String[] args) {
        int rc = run(args, System.out, System.err, System.getenv());
        System.exit(rc);
    }

    /** Runs the tool in-process (tests), writing to the given streams; returns the exit code. */
    public static int run(String[] args, PrintStream stdout, PrintStream stderr, Map<String, String> env) {
        PrintWriter out = new PrintWriter(new OutputStreamWriter(stdout, StandardCharsets.UTF_8), true);
        PrintWriter err = new PrintWriter(new OutputStreamWriter(stderr, StandardCharsets.UTF_8), true);
        Main main = new Main();
        main.env = env;
        main.out = out;
        main.err = err;
        CommandLine cl = new CommandLine(main);
        cl.setOut(out);
        cl.setErr(err);
        cl.setParameterExceptionHandler((ex, a) -> {
            err.println("blksnap: " + ex.getMessage());
            CommandLine c = ex.getCommandLine();
            err.println("Usage: " + c.getCommandSpec().qualifiedName() + " --help for the options");
            return ExitCodes.USAGE;
        });
        cl.setExecutionExceptionHandler((ex, c, parsed) -> main.failure(ex, c));
        cl.setExitCodeExceptionMapper(t -> ExitCodes.USAGE);
        int rc = cl.execute(args);
        out.flush();
        err.flush();
        if (rc == CommandLine.ExitCode.USAGE && args.length == 0) {
            return ExitCodes.USAGE;
        }
        return rc;
    }

    private int failure(Exception ex, CommandLine c) {
        String what = c.getCommandSpec().qualifiedName(" ").replaceFirst("^blksnap ?", "");
        String prefix = "blksnap: " + (what.isEmpty() ? "" : what + ": ");
        if (ex instanceof ControlClient.RemoteException r) {
            err.println(prefix + r.errnoName() + " (" + r.errno() + "): " + r.getMessage());
            if (json) {
                out.println(mapper.writeValueAsString(mapper.createObjectNode().set("error", mapper.createObjectNode()
                        .put("name", r.errnoName()).put("errno", r.errno()).put("message", r.getMessage()))));
            }
            return r.errno() > 0 && r.errno() < 256 ? r.errno() : 1;
        }
        if (ex instanceof ControlClient.UnreachableException u) {
            err.println(prefix + u.getMessage());
            return ExitCodes.UNREACHABLE;
        }
        if (ex instanceof ControlClient.ProtocolException p) {
            err.println(prefix + p.getMessage());
            return ExitCodes.PROTOCOL;
        }
        if (ex instanceof Cli.LocalIoException l) {
            err.println(prefix + l.getMessage());
            return ExitCodes.IO;
        }
        if (ex instanceof CommandLine.ParameterException || ex instanceof BlksnapException) {
            err.println(prefix + ex.getMessage());
            return ExitCodes.USAGE;
        }
        err.println(prefix + "unexpected failure: " + ex);
        ex.printStackTrace(err);
        return 70;
    }

    Cli cli() {
        Path socket = control;
        if (socket == null) {
            String e = env.get("BLKSNAP_CONTROL");
            socket = Path.of(e != null && !e.isBlank() ? e : DEFAULT_CONTROL);
        }
        return new Cli(new ControlClient(socket, mapper), json, out, err, mapper);
    }

    static Cli cli(CommandSpec spec) {
        return ((Main) spec.root().userObject()).cli();
    }

    // ---- converters -----------------------------------------------------------------------------

    /** {@code 64M}, {@code 1G}, ... into bytes. */
    static final class SizeConverter implements CommandLine.ITypeConverter<Long> {
        @Override
        public Long convert(String value) {
            try {
                return Sizes.parseBytes("size", value);
            } catch (BlksnapException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    /** A size where a plain number means MiB (the v1 tool's --limit). */
    static final class MibSizeConverter implements CommandLine.ITypeConverter<Long> {
        @Override
        public Long convert(String value) {
            String v = value.trim();
            if (v.chars().allMatch(Character::isDigit) && !v.isEmpty()) {
                v = v + "M";
            }
            return new SizeConverter().convert(v);
        }
    }

    static final class RangeConverter implements CommandLine.ITypeConverter<SectorRange> {
        @Override
        public SectorRange convert(String value) {
            try {
                return SectorRange.parse(value);
            } catch (BlksnapException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    static final class UuidConverter implements CommandLine.ITypeConverter<UUID> {
        @Override
        public UUID convert(String value) {
            try {
                UUID id = UUID.fromString(value.trim());
                if (!id.toString().equalsIgnoreCase(value.trim())) {
                    throw new IllegalArgumentException();
                }
                return id;
            } catch (IllegalArgumentException e) {
                throw new CommandLine.TypeConversionException("'" + value + "' is not a snapshot id (a UUID such as "
                        + "123e4567-e89b-12d3-a456-426614174000)");
            }
        }
    }

    abstract static class Base implements Callable<Integer> {
        @Spec
        CommandSpec spec;

        Cli cli() {
            return Main.cli(spec);
        }
    }

    // ---- new-style commands ---------------------------------------------------------------------

    @Command(name = "version", description = "Print the engine version.")
    static final class VersionCmd extends Base {
        @Override
        public Integer call() throws Exception {
            return cli().version();
        }
    }

    @Command(name = "params", description = "Show all parameters, one (NAME) or set one (NAME=VALUE).")
    static final class ParamsCmd extends Base {
        @Parameters(arity = "0..1", paramLabel = "NAME[=VALUE]")
        String arg;

        @Override
        public Integer call() throws Exception {
            return cli().params(arg);
        }
    }

    @Command(name = "status", description = "Show devices, trackers and snapshots.")
    static final class StatusCmd extends Base {
        @Override
        public Integer call() throws Exception {
            return cli().status();
        }
    }

    @Command(name = "device", description = "Devices served.", subcommands = DeviceCmd.ListCmd.class)
    static final class DeviceCmd {
        @Command(name = "list", description = "List devices: NAME SIZE TRACKED URI.")
        static final class ListCmd extends Base {
            @Override
            public Integer call() throws Exception {
                return cli().deviceList();
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
                return cli().trackerCollect();
            }
        }

        @Command(name = "read-cbt-map", description = "Write the CBT read map (one byte per block) to a file.")
        static final class ReadCbtMap extends Base {
            @Option(names = "--device", required = true, paramLabel = "NAME")
            String device;
            @Option(names = "--file", required = true, paramLabel = "OUT")
            Path file;
            @Option(names = "--offset", paramLabel = "BLOCKS", defaultValue = "0")
            long offset;
            @Option(names = "--length", paramLabel = "BLOCKS")
            Long length;

            @Override
            public Integer call() throws Exception {
                if (offset < 0 || (length != null && length < 0)) {
                    throw new CommandLine.ParameterException(spec.commandLine(), "--offset and --length must be >= 0");
                }
                return cli().readCbtMap(device, file, offset, length);
            }
        }

        @Command(name = "mark-dirty", description = "Mark sector ranges changed (of a device or an image).")
        static final class MarkDirty extends Base {
            @Option(names = "--device", required = true, paramLabel = "NAME")
            String device;
            @Option(names = "--range", required = true, paramLabel = "SECTOR:COUNT", converter = RangeConverter.class)
            List<SectorRange> ranges = new ArrayList<>();

            @Override
            public Integer call() throws Exception {
                return cli().markDirty(device, ranges);
            }
        }

        @Command(name = "remove", description = "Detach the tracker (its CBT history is lost).")
        static final class Remove extends Base {
            @Option(names = "--device", required = true, paramLabel = "NAME")
            String device;

            @Override
            public Integer call() throws Exception {
                return cli().trackerRemove(device);
            }
        }
    }

    @Command(name = "snapshot", description = "Snapshots.",
            subcommands = {SnapshotCmd.Create.class, SnapshotCmd.AppendStorage.class, SnapshotCmd.Take.class,
                    SnapshotCmd.Collect.class, SnapshotCmd.Images.class, SnapshotCmd.WaitEvent.class,
                    SnapshotCmd.Stretch.class, SnapshotCmd.Destroy.class})
    static final class SnapshotCmd {
        @Command(name = "create", description = "Create a snapshot of devices; prints its id.")
        static final class Create extends Base {
            @Option(names = "--device", required = true, paramLabel = "NAME")
            List<String> devices = new ArrayList<>();

            @Override
            public Integer call() throws Exception {
                return cli().snapshotCreate(devices);
            }
        }

        @Command(name = "append-storage", description = "Add a file (created with --size if missing) or device "
                + "to the snapshot's difference storage.")
        static final class AppendStorage extends Base {
            @Option(names = "--id", required = true, converter = UuidConverter.class)
            UUID id;
            @Option(names = "--file", required = true, paramLabel = "PATH")
            Path file;
            @Option(names = "--size", paramLabel = "SIZE", converter = SizeConverter.class)
            Long size;
            @Option(names = "--range", paramLabel = "SECTOR:COUNT", converter = RangeConverter.class)
            List<SectorRange> ranges = new ArrayList<>();

            @Override
            public Integer call() throws Exception {
                return cli().appendStorage(id, file, size, ranges);
            }
        }

        @Command(name = "take", description = "Take the snapshot (optionally freezing filesystems around it).")
        static final class Take extends Base {
            @Option(names = "--id", required = true, converter = UuidConverter.class)
            UUID id;
            @Option(names = "--freeze", paramLabel = "MOUNTPOINT")
            List<Path> freeze = new ArrayList<>();

            @Override
            public Integer call() throws Exception {
                return cli().take(id, freeze);
            }
        }

        @Command(name = "collect", description = "List snapshot ids.")
        static final class Collect extends Base {
            @Override
            public Integer call() throws Exception {
                return cli().snapshotCollect();
            }
        }

        @Command(name = "images", description = "Images of a taken snapshot: NAME IMAGE URI.")
        static final class Images extends Base {
            @Option(names = "--id", required = true, converter = UuidConverter.class)
            UUID id;

            @Override
            public Integer call() throws Exception {
                return cli().images(id);
            }
        }

        @Command(name = "wait-event", description = "Wait for the snapshot's next event.")
        static final class WaitEvent extends Base {
            @Option(names = "--id", required = true, converter = UuidConverter.class)
            UUID id;
            @Option(names = "--timeout", required = true, paramLabel = "MS")
            long timeoutMs;

            @Override
            public Integer call() throws Exception {
                return cli().waitEvent(id, timeoutMs);
            }
        }

        @Command(name = "stretch", description = "Grow the storage on low-space events until the snapshot is destroyed.")
        static final class Stretch extends Base {
            @Option(names = "--id", required = true, converter = UuidConverter.class)
            UUID id;
            @Option(names = "--dir", required = true, paramLabel = "DIR")
            Path dir;
            @Option(names = "--limit", required = true, paramLabel = "SIZE", converter = SizeConverter.class)
            long limit;
            @Option(names = "--poll", paramLabel = "MS", defaultValue = "1000", hidden = true)
            long pollMs;

            @Override
            public Integer call() throws Exception {
                return cli().stretch(id, dir, limit, pollMs);
            }
        }

        @Command(name = "destroy", description = "Destroy the snapshot (images go away; trackers stay).")
        static final class Destroy extends Base {
            @Option(names = "--id", required = true, converter = UuidConverter.class)
            UUID id;

            @Override
            public Integer call() throws Exception {
                return cli().destroy(id);
            }
        }
    }
}
