package org.blksnap.cli;

/**
 * Exit codes of the {@code blksnap} tool, besides the errno numbers it exits with when the daemon
 * reports an engine error (ESRCH 3, ENOENT 2, EBUSY 16, EINVAL 22, ...).
 */
public final class ExitCodes {
    private ExitCodes() {
    }

    /** Success. */
    public static final int OK = 0;
    /** Bad command line (sysexits EX_USAGE). */
    public static final int USAGE = 64;
    /** A local file could not be read or written (sysexits EX_IOERR). */
    public static final int IO = 74;
    /** The daemon answered something that is not the control API, or the connection broke (EX_PROTOCOL). */
    public static final int PROTOCOL = 76;
    /** The daemon is not reachable at the control socket (ECONNREFUSED). */
    public static final int UNREACHABLE = 111;
}
