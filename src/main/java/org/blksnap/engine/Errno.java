package org.blksnap.engine;

/**
 * The error names a caller of the engine must react to, with their Linux errno numbers.
 *
 * <p>The names and numbers are stable: the control API reports them by name and number, the
 * {@code blksnap} tool exits with the number, and the NBD server maps them onto NBD error codes
 * (in its own package: the engine knows nothing of NBD).
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
