package org.blksnap.engine.module;

/**
 * The error names a caller of the engine must react to, with their Linux errno numbers.
 *
 * <p>The names and numbers are stable: the control API reports them by name and number, the
 * {@code blksnap} tool exits with the number, and the NBD server maps them onto NBD error codes
 * ({@link #nbdError()}).
 */
public enum Errno {
    EPERM(1), ENOENT(2), ESRCH(3), EINTR(4), EIO(5), ENXIO(6), EAGAIN(11), ENOMEM(12),
    EFAULT(14), EBUSY(16), EEXIST(17), ENODEV(19), EINVAL(22), ENOTTY(25), EFBIG(27), ENOSPC(28),
    ENODATA(61), EOVERFLOW(75), ENOTSUP(95), ENOBUFS(105), ESHUTDOWN(108), EALREADY(114);

    private final int number;

    Errno(int number) {
        this.number = number;
    }

    /** The Linux errno number, positive. */
    public int number() {
        return number;
    }

    /**
     * The NBD error number for this condition: NBD defines EPERM, EIO, ENOMEM, EINVAL, ENOSPC,
     * EOVERFLOW, ENOTSUP and ESHUTDOWN; everything else is reported as EIO (or EINVAL for
     * argument errors), as the NBD specification asks.
     */
    public int nbdError() {
        return switch (this) {
            case EPERM -> 1;
            case ENOMEM -> 12;
            case EINVAL, ENODATA, ENXIO, ENOENT -> 22;
            case ENOSPC, EFBIG -> 28;
            case EOVERFLOW -> 75;
            case ENOTSUP -> 95;
            case ESHUTDOWN, ENODEV -> 108;
            default -> 5;
        };
    }

    /** The errno with that number, or null. */
    public static Errno ofNumber(int number) {
        for (Errno e : values()) {
            if (e.number == number) {
                return e;
            }
        }
        return null;
    }
}
