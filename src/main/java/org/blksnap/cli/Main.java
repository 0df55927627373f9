package org.blksnap.cli;

import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.UUID;
import java.util.function.BiFunction;
import java.util.function.Function;
import org.blksnap.ctrl.api.InvalidValueException;
import org.blksnap.ctrl.api.Range;
import org.blksnap.ctrl.api.Size;
import org.blksnap.ctrl.api.Uuids;
import picocli.CommandLine.Command;
import picocli.CommandLine;

/**
 * The {@code blksnap} command-line tool: talks to blksnapd's control API. Every exit code comes from
 * {@link ExitCodes}: 0 success; the errno number when the daemon reports an engine error (ESRCH 3,
 * EBUSY 16, ...); 64 usage; 74 a local file; 76 a broken answer; 111 the daemon is not reachable.
 * See docs/cli.md.
 *
 * <p>This class is the whole command tree ({@link Tool}, the root, with every subcommand), as the
 * completion and man page generators and the tests see it. A run builds only the branch its
 * arguments name ({@link CommandTree}): the full tree costs a call about 0.1 s of reflection.
 */
@Command(subcommands = {Commands.VersionCmd.class, Commands.ParamsCmd.class, Commands.StatusCmd.class,
        Commands.DeviceCmd.class, Commands.TrackerCmd.class, Commands.SnapshotCmd.class,
        BackupCommands.BackupCmd.class, BackupCommands.PointsCmd.class, BackupCommands.RestoreCmd.class,
        BackupCommands.VerifyCmd.class, BackupCommands.PruneCmd.class, BackupCommands.GcCmd.class,
        BackupCommands.RepoCmd.class, ServeCmd.class})
public final class Main extends Tool {
    /** Set in the environment of a run the resident backup agent makes ({@link #runFor}): the job's id. */
    public static final String AGENT_JOB_ENV = "BLKSNAP_AGENT_JOB";

    private static final String SELECTOR_PROVIDER = "java.nio.channels.spi.SelectorProvider";
    private static final String EPOLL_PROVIDER = "sun.nio.ch.EPollSelectorProvider";

    static {
        // picocli's DefaultFactory looks for groovy.lang.Closure when first used: a class-path search
        // through every jar of lib/ for a class that is not there, 40 ms of every call of the tool
        // (async-profiler, 5 runs of `backup`); no annotation here is a Groovy closure
        if (System.getProperty("picocli.disable.closures") == null) {
            System.setProperty("picocli.disable.closures", "true");
        }
        // The first socket asks the ServiceLoader for a SelectorProvider: another search through
        // every jar of lib/ (META-INF/services), 40-60 ms of every call that talks to the daemon.
        // Naming the JDK's own provider (Linux: epoll) skips the search; elsewhere the lookup stays.
        if (System.getProperty(SELECTOR_PROVIDER) == null) {
            try {
                Class.forName(EPOLL_PROVIDER, false, null);
                System.setProperty(SELECTOR_PROVIDER, EPOLL_PROVIDER);
            } catch (ClassNotFoundException e) {
                // not Linux: the default lookup
            }
        }
    }

    /** The whole tree, for a run whose arguments {@link CommandTree} leaves to picocli. */
    Main(Tool session) {
        super(session);
    }

    /** The whole tree (what picocli's generators instantiate). */
    public Main() {
    }

    /**
     * What the output is: a terminal gets colour (unless {@code NO_COLOR} is set or {@code TERM} is
     * {@code dumb}) and its own width; anything else gets plain text 80 wide. Immutable.
     */
    sealed interface Terminal {
        int DEFAULT_COLUMNS = 80;
        /** Not a terminal. */
        Terminal NONE = new Fixed(false, false, DEFAULT_COLUMNS);

        /** Whether the output is a terminal (progress is drawn as a line rewritten in place). */
        boolean isTerminal();

        /** Whether to colour the output. */
        boolean color();

        /** The width in characters. */
        int columns();

        /**
         * This process's output: a terminal when it is the process's stdout and that is one; its
         * width is {@code COLUMNS} if exported, else what {@code stty size} says of it, else 80.
         */
        record Local(boolean systemOut, Map<String, String> env) implements Terminal {
            /** Asked only when needed. */
            @Override
            public boolean isTerminal() {
                java.io.Console console = systemOut ? System.console() : null;
                return console != null && console.isTerminal();
            }

            @Override
            public boolean color() {
                String noColor = env.get("NO_COLOR");
                return (noColor == null || noColor.isEmpty()) && !"dumb".equals(env.get("TERM")) && isTerminal();
            }

            /** Asks the terminal only when called (one {@code stty} run). */
            @Override
            public int columns() {
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
                    String[] rowsColumns = new String(p.getInputStream().readAllBytes(), StandardCharsets.US_ASCII)
                            .trim().split(" ");
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

        /** Another process's output, as that process described it (the resident agent's caller). */
        record Fixed(boolean isTerminal, boolean color, int columns) implements Terminal {
        }
    }

    static final class ToolVersion implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"blksnap tool 1.0.0 (control API v1)"};
        }
    }

    /**
     * The tool's process: runs the command, flushes its output and halts. Not {@link System#exit}
     * when it can be helped: that asks {@link System#getLogger} whether to log the exit, and finding
     * out searches every jar of lib/ for a logging backend (ServiceLoader), 40 ms of every call
     * (async-profiler, wall clock). So a command removes the shutdown hooks it adds before it
     * returns (backup and the agent run do). When a signal has begun the JVM's shutdown (its hooks
     * are cancelling the work the command is returning from), the exit waits for them as before and
     * the process ends with the signal's status. Killed between that check and the halt, the tool
     * leaves what kill -9 would: the snapshot's lease and the next backup clean up.
     */
    public static void main(String[] args) {
        int rc = run(args, System.out, System.err, System.getenv());
        System.out.flush();
        System.err.flush();
        if (shuttingDown()) {
            System.exit(rc);
        }
        Runtime.getRuntime().halt(rc);
    }

    /** Whether the JVM's shutdown has begun (a signal): no hook can be added then. */
    private static boolean shuttingDown() {
        Thread probe = new Thread(() -> { });
        try {
            Runtime.getRuntime().addShutdownHook(probe);
            Runtime.getRuntime().removeShutdownHook(probe);
            return false;
        } catch (IllegalStateException e) {
            return true;
        }
    }

    /** Runs the tool in-process (tests), writing to the given streams; returns the exit code. */
    public static int run(String[] args, PrintStream stdout, PrintStream stderr, Map<String, String> env) {
        return run(args, stdout, stderr, env, new Terminal.Local(stdout == System.out, env), System.in, null,
                CommandTree::of);
    }

    /**
     * Runs the tool in-process for another process (the resident backup agent): its output and
     * stdin are the given streams, its terminal the caller's as the caller described it. Returns
     * the exit code.
     */
    public static int runFor(String[] args, PrintStream stdout, PrintStream stderr, Map<String, String> env,
                             boolean terminal, java.io.InputStream stdin, org.blksnap.backup.ImageReader.Opener images) {
        return run(args, stdout, stderr, env, new Terminal.Fixed(terminal, false, Terminal.DEFAULT_COLUMNS), stdin,
                images, CommandTree::of);
    }

    /**
     * As {@link #run(String[], PrintStream, PrintStream, Map)}, with the command tree that {@code tree}
     * builds for the arguments and the run's root (CommandTreeTest runs the whole tree this way).
     */
    static int run(String[] args, PrintStream stdout, PrintStream stderr, Map<String, String> env,
                   BiFunction<String[], Tool, CommandLine> tree) {
        return run(args, stdout, stderr, env, new Terminal.Local(stdout == System.out, env), System.in, null, tree);
    }

    private static int run(String[] args, PrintStream stdout, PrintStream stderr, Map<String, String> env,
                           Terminal terminal, java.io.InputStream stdin, org.blksnap.backup.ImageReader.Opener images,
                           BiFunction<String[], Tool, CommandLine> tree) {
        PrintWriter out = new PrintWriter(new OutputStreamWriter(stdout, StandardCharsets.UTF_8), true);
        PrintWriter err = new PrintWriter(new OutputStreamWriter(stderr, StandardCharsets.UTF_8), true);
        Tool tool = new Tool();
        tool.session(env, out, err, terminal, stdin, images);
        CommandLine cl = tree.apply(args, tool);
        cl.setOut(out);
        cl.setErr(err);
        cl.setParameterExceptionHandler((ex, a) -> {
            err.println("blksnap: " + ex.getMessage());
            CommandLine c = ex.getCommandLine();
            err.println("Usage: " + c.getCommandSpec().qualifiedName() + " --help for the options");
            return ExitCodes.USAGE;
        });
        cl.setExecutionExceptionHandler((ex, c, parsed) -> ((Tool) cl.getCommand()).failure(ex, c));
        cl.setExitCodeExceptionMapper(t -> ExitCodes.USAGE);
        int rc = cl.execute(V1Verbs.rewrite(args, cl.getCommandSpec()));
        out.flush();
        err.flush();
        if (rc == CommandLine.ExitCode.USAGE && args.length == 0) {
            return ExitCodes.USAGE;
        }
        return rc;
    }

    /** The whole command tree, as a run sees it ({@link #configure}). */
    static CommandLine commandLine(Main main) {
        return configure(new CommandLine(main));
    }

    /**
     * A command tree made ready for a run, once its subcommands are in (converters apply to the
     * commands there when registered): the wire contract's parsers for ids, sizes and ranges, and
     * the v1 verbs listed in the help.
     */
    static CommandLine configure(CommandLine cl) {
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
}
