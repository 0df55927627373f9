package org.blksnap.engine;

/**
 * A condition the caller must react to, named by a stable {@link Errno}. The message says what
 * failed (which snapshot, device, parameter or range) and why.
 *
 * <p>Unchecked, so that it crosses lambdas and virtual-thread boundaries; every public engine
 * method documents which codes it throws.
 */
public final class BlksnapException extends RuntimeException {
    private final Errno errno;

    public BlksnapException(Errno errno, String message) {
        super(message);
        this.errno = errno;
    }

    public BlksnapException(Errno errno, String message, Throwable cause) {
        super(message, cause);
        this.errno = errno;
    }

    /** The stable error name. */
    public Errno errno() {
        return errno;
    }

    @Override
    public String toString() {
        return errno + ": " + getMessage();
    }
}
