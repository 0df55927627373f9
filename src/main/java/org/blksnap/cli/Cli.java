package org.blksnap.cli;

import java.io.PrintWriter;
import java.util.function.Function;
import org.blksnap.ctrl.api.Reply;
import org.blksnap.ctrl.api.Request;
import org.blksnap.ctrl.api.WireJson;

/**
 * One run of the tool against one daemon: sends requests and prints what comes back, as one JSON
 * line each with {@code --json}, else in the text form {@link TextForms} gives it. Not thread-safe.
 */
final class Cli {
    private final ControlClient client;
    private final boolean jsonOutput;
    private final PrintWriter out;
    private final PrintWriter err;
    private final Main.Terminal terminal;

    Cli(ControlClient client, boolean jsonOutput, PrintWriter out, PrintWriter err, Main.Terminal terminal) {
        this.client = client;
        this.jsonOutput = jsonOutput;
        this.out = out;
        this.err = err;
        this.terminal = terminal;
    }

    /** How {@code status} is drawn on this output: its width, colour only on a terminal. */
    StatusView.Options statusOptions(String repo, java.util.Map<String, StatusView.LastBackup> lastBackups) {
        return new StatusView.Options(repo, lastBackups, System.currentTimeMillis(), terminal.columns(),
                terminal.color());
    }

    /** A local failure (a file we must write), reported with exit code {@link ExitCodes#IO}. */
    static final class LocalIoException extends Exception {
        LocalIoException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** Calls the daemon; see {@link ControlClient#call}. */
    <R extends Reply> R call(Request<R> request) throws ControlClient.UnreachableException,
            ControlClient.RemoteException, ControlClient.ProtocolException {
        return client.call(request);
    }

    /**
     * Prints one result: its JSON line with {@code --json}, else its text form (nothing when the text
     * form is empty), and flushes, so that a long-running command's lines appear as they happen.
     */
    <T> void print(T result, Function<? super T, String> textForm) {
        String text = jsonOutput ? WireJson.write(result) : textForm.apply(result);
        if (!text.isEmpty()) {
            out.println(text);
        }
        out.flush();
    }

    /** The same session printing its results on stderr (for a helper whose reports must not mix with stdout). */
    Cli onStderr() {
        return new Cli(client, jsonOutput, err, err, Main.Terminal.NONE);
    }

    /** Whether progress is drawn as a line rewritten in place (the output is a terminal). */
    boolean terminal() {
        return terminal.isTerminal();
    }

    /** Writes text another process printed (the resident agent's job) as it is, and flushes; null is nothing. */
    void relay(String stdout, String stderr) {
        if (stdout != null) {
            out.print(stdout);
            out.flush();
        }
        if (stderr != null) {
            err.print(stderr);
            err.flush();
        }
    }

    /** Where warnings and progress go. */
    PrintWriter err() {
        return err;
    }

    /** Whether results are printed as JSON. */
    boolean json() {
        return jsonOutput;
    }

    /** A warning on stderr that does not change the exit code. */
    void warn(String message) {
        err.println("blksnap: " + message);
        err.flush();
    }
}
