package org.blksnap.cli;

import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Map;
import java.util.UUID;
import java.util.function.Function;
import org.blksnap.ctrl.api.InvalidValueException;
import org.blksnap.ctrl.api.Range;
import org.blksnap.ctrl.api.Size;
import org.blksnap.ctrl.api.Uuids;
import org.blksnap.ctrl.api.WireJson;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine;

/**
 * The {@code blksnap} command-line tool: talks to blksnapd's control API. Every exit code comes from
 * {@link ExitCodes}: 0 success; the errno number when the daemon reports an engine error (ESRCH 3,
 * EBUSY 16, ...); 64 usage; 74 a local file; 76 a broken answer; 111 the daemon is not reachable.
 * See docs/cli.md.
 */
@Command(name = "blksnap", mixinStandardHelpOptions = true, scope = CommandLine.ScopeType.INHERIT, versionProvider = Main.ToolVersion.class,
        description = "Control blksnapd: change tracking, snapshots and snapshot images served over NBD.",
        footer = {"", "Exit status: 0 ok; the errno number of an engine error (ESRCH 3, ENOENT 2, EBUSY 16, "
                + "EINVAL 22, ...); 64 usage; 74 local file error; 76 bad answer; 111 daemon not reachable."},
        subcommands = {Commands.VersionCmd.class, Commands.ParamsCmd.class, Commands.StatusCmd.class,
                Commands.DeviceCmd.class, Commands.TrackerCmd.class, Commands.SnapshotCmd.class,
                BackupCommands.BackupCmd.class, BackupCommands.PointsCmd.class, BackupCommands.RestoreCmd.class,
                BackupCommands.VerifyCmd.class, BackupCommands.PruneCmd.class, BackupCommands.GcCmd.class,
                BackupCommands.RepoCmd.class, ServeCmd.class})
public final class Main {
    /** The control socket used when neither --control nor BLKSNAP_CONTROL is given. */
    public static final String DEFAULT_CONTROL = "blksnap-data/control.sock";

    @Option(names = "--control", paramLabel = "PATH", scope = CommandLine.ScopeType.INHERIT,
            description = "control socket of blksnapd (default: $BLKSNAP_CONTROL, else ./" + DEFAULT_CONTROL + ")")
    Path control;

    @Option(names = "--json", scope = CommandLine.ScopeType.INHERIT, description = "print machine-readable JSON")
    boolean json;

    private Map<String, String> env = System.getenv();
    private PrintWriter out;
    private PrintWriter err;
    private Terminal terminal = Terminal.NONE;

    /**
     * What the output is: a terminal gets colour (unless {@code NO_COLOR} is set or {@code TERM} is
     * {@code dumb}) and its own width ({@code COLUMNS} if exported, else what {@code stty size} says
     * of it, else 80); anything else gets plain text 80 wide.
     */
    record Terminal(boolean systemOut, Map<String, String> env) {
        static final int DEFAULT_COLUMNS = 80;
        static final Terminal NONE = new Terminal(false, Map.of());

        /** Whether the output is the process's stdout and that is a terminal (asked only when needed). */
        boolean isTerminal() {
            java.io.Console console = systemOut ? System.console() : null;
            return console != null && console.isTerminal();
        }

        boolean color() {
            String noColor = env.get("NO_COLOR");
            return (noColor == null || noColor.isEmpty()) && !"dumb".equals(env.get("TERM")) && isTerminal();
        }

        /** The width in characters; asks the terminal only when called (one {@code stty} run). */
        int columns() {
            if (!isTerminal()) {
                return DEFAULT_COLUMNS;
            }
            String c = env.get("COLUMNS");
            if (c != null && c.matches("[0-9]{2,4}")) {
                return Integer.parseInt(c);
            }
            try {
                Process p = new ProcessBuilder("stty", "size").redirectInput(new java.io.File("/dev/tty"))
                        .redirectError(ProcessBuilder.Redirect.DISCARD).start();
                String[] rowsColumns = new String(p.getInputStream().readAllBytes(), StandardCharsets.US_ASCII).trim()
                        .split(" ");
                if (p.waitFor() == 0 && rowsColumns.length == 2 && rowsColumns[1].matches("[0-9]{2,4}")) {
                    return Integer.parseInt(rowsColumns[1]);
                }
            } catch (java.io.IOException e) {
                // no stty or no /dev/tty: the default width
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return DEFAULT_COLUMNS;
        }
    }

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
        main.terminal = new Terminal(stdout == System.out, env);
        CommandLine cl = commandLine(main);
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
        int rc = cl.execute(V1Verbs.rewrite(args, cl.getCommandSpec()));
        out.flush();
        err.flush();
        if (rc == CommandLine.ExitCode.USAGE && args.length == 0) {
            return ExitCodes.USAGE;
        }
        return rc;
    }

    /** The command tree, with the wire contract's parsers for ids, sizes and ranges, and the v1 verbs listed. */
    static CommandLine commandLine(Main main) {
        CommandLine cl = new CommandLine(main);
        cl.registerConverter(UUID.class, wire(value -> Uuids.parse(value.trim())));
        cl.registerConverter(Size.class, wire(Size::parse));
        cl.registerConverter(Range.class, wire(Range::parse));
        cl.getCommandSpec().usageMessage().footer(V1Verbs.helpFooter(cl.getCommandSpec().usageMessage().footer()));
        return cl;
    }

    /** A converter whose malformed values are usage errors that say what is wrong. */
    private static <T> CommandLine.ITypeConverter<T> wire(Function<String, T> parse) {
        return value -> {
            try {
                return parse.apply(value);
            } catch (InvalidValueException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        };
    }

    /** Reports a command's failure on stderr (and as the error body with {@code --json}); returns its exit code. */
    private int failure(Exception ex, CommandLine c) {
        String what = c.getCommandSpec().qualifiedName(" ").replaceFirst("^blksnap ?", "");
        String prefix = "blksnap: " + (what.isEmpty() ? "" : what + ": ");
        int code = ExitCodes.of(ex);
        if (ex instanceof ControlClient.RemoteException r) {
            err.println(prefix + r.errnoName() + " (" + r.errno() + "): " + r.getMessage());
            if (json) {
                out.println(WireJson.write(r.body()));
            }
        } else if (ex instanceof org.blksnap.backup.RepositoryException r) {
            err.println(prefix + r.code() + ": " + r.getMessage());
        } else if (code == ExitCodes.SOFTWARE) {
            err.println(prefix + "unexpected failure: " + ex);
            ex.printStackTrace(err);
        } else {
            err.println(prefix + ex.getMessage());
        }
        return code;
    }

    /** An environment variable of this run (the process's, or a test's), or null. */
    String env(String name) {
        return env.get(name);
    }

    /** The control socket of this run: --control, else $BLKSNAP_CONTROL, else the default. */
    Path controlSocket() {
        if (control != null) {
            return control;
        }
        String e = env.get("BLKSNAP_CONTROL");
        return Path.of(e != null && !e.isBlank() ? e : DEFAULT_CONTROL);
    }

    /** The session of this run: the client of the control socket and the output. */
    Cli cli() {
        return new Cli(new ControlClient(controlSocket()), json, out, err, terminal);
    }
}
