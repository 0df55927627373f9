package org.blksnap.cli;

import org.blksnap.ctrl.api.InvalidValueException;
import picocli.CommandLine;

/**
 * Every exit code of the {@code blksnap} tool, and the one rule that turns an engine error the
 * daemon reported into an exit code (its errno number). Nothing else in the tool returns a number
 * of its own.
 */
final class ExitCodes {
    private ExitCodes() {
    }

    /** Success. */
    static final int OK = 0;
    /** An engine error whose errno number cannot be an exit status (not 1..255). */
    static final int FAILURE = 1;
    /** Bad command line (sysexits EX_USAGE): unknown command or option, malformed id, size or range. */
    static final int USAGE = 64;
    /** A bug in the tool (sysexits EX_SOFTWARE). */
    static final int SOFTWARE = 70;
    /** A local file could not be read or written (sysexits EX_IOERR). */
    static final int IO = 74;
    /** The daemon answered something that is not the control API, or the connection broke (EX_PROTOCOL). */
    static final int PROTOCOL = 76;
    /** The daemon is not reachable at the control socket (ECONNREFUSED). */
    static final int UNREACHABLE = 111;
    /** Stopped by SIGTERM or Ctrl-C after cleaning up (128 + 15, as a shell reports it). */
    static final int SIGNALLED = 143;

    /** The exit code for an engine error the daemon reported: its errno number (ESRCH 3, EBUSY 16, ...). */
    static int ofErrno(int errno) {
        return errno > 0 && errno < 256 ? errno : FAILURE;
    }

    /** The exit code for a command that failed with {@code failure}. */
    static int of(Exception failure) {
        return switch (failure) {
            case ControlClient.RemoteException r -> ofErrno(r.errno());
            case ControlClient.UnreachableException _ -> UNREACHABLE;
            case ControlClient.ProtocolException _ -> PROTOCOL;
            case Cli.LocalIoException _ -> IO;
            case org.blksnap.backup.RepositoryException r -> r.code().exitStatus();
            case CommandLine.ParameterException _, InvalidValueException _ -> USAGE;
            default -> SOFTWARE;
        };
    }
}
