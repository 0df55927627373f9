package org.blksnap.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Map;
import org.blksnap.ctrl.api.WireJson;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The root command of the tool without its subcommands: its own options ({@code --control},
 * {@code --json}, help and version, inherited by every command) and the session of one run (the
 * environment and the output). {@link Main} is the same root with every subcommand; a run builds
 * this root with the one branch its arguments name ({@link CommandTree}). Not final for that reason
 * only. Not thread-safe: one per run.
 */
@Command(name = "blksnap", mixinStandardHelpOptions = true, scope = CommandLine.ScopeType.INHERIT,
        versionProvider = Main.ToolVersion.class,
        description = "Control blksnapd: change tracking, snapshots and snapshot images served over NBD.",
        footer = {"", "Exit status: 0 ok; the errno number of an engine error (ESRCH 3, ENOENT 2, EBUSY 16, "
                + "EINVAL 22, ...); 64 usage; 74 local file error; 76 bad answer; 111 daemon not reachable."})
class Tool {
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
    private Main.Terminal terminal = Main.Terminal.NONE;
    private java.io.InputStream stdin = System.in;
    private org.blksnap.backup.ImageReader.Opener localImages;

    Tool() {
    }

    /** A root for the same session (before parsing: options are not copied). */
    Tool(Tool session) {
        session(session.env, session.out, session.err, session.terminal, session.stdin, session.localImages);
    }

    /**
     * Where this run reads its environment and input and writes its output, and how it reads
     * snapshot images ({@link #localImages}).
     */
    final void session(Map<String, String> env, PrintWriter out, PrintWriter err, Main.Terminal terminal,
                       java.io.InputStream stdin, org.blksnap.backup.ImageReader.Opener localImages) {
        this.env = env;
        this.out = out;
        this.err = err;
        this.terminal = terminal;
        this.stdin = stdin;
        this.localImages = localImages;
    }

    /** This run's standard input (the process's, or the resident agent's caller's stand-in). */
    final java.io.InputStream stdin() {
        return stdin;
    }

    /**
     * How this run reads snapshot images in the process that serves them (the resident agent's
     * runs), or null: over NBD.
     */
    final org.blksnap.backup.ImageReader.Opener localImages() {
        return localImages;
    }

    /** This run's output as a terminal (or not). */
    final Main.Terminal terminal() {
        return terminal;
    }

    /** Reports a command's failure on stderr (and as the error body with {@code --json}); returns its exit code. */
    final int failure(Exception ex, CommandLine c) {
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
    final String env(String name) {
        return env.get(name);
    }

    /** This run's whole environment (the process's, or a test's); read-only. */
    final Map<String, String> environment() {
        return java.util.Collections.unmodifiableMap(env);
    }

    /** This run's standard output. */
    final PrintWriter out() {
        return out;
    }

    /** This run's standard error. */
    final PrintWriter err() {
        return err;
    }

    /** The control socket of this run: --control, else $BLKSNAP_CONTROL, else the default. */
    final Path controlSocket() {
        if (control != null) {
            return control;
        }
        String e = env.get("BLKSNAP_CONTROL");
        return Path.of(e != null && !e.isBlank() ? e : DEFAULT_CONTROL);
    }

    /** The session of this run: the client of the control socket and the output. */
    final Cli cli() {
        return new Cli(new ControlClient(controlSocket()), json, out, err, terminal);
    }
}
