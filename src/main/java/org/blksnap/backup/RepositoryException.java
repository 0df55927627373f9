package org.blksnap.backup;

/**
 * A condition a caller of the backup repository must react to, with a stable {@link Code} whose
 * name and exit status the {@code blksnap} tool reports ({@code cli/ExitCodes}). The message names
 * what failed: the repository, file, point, offset.
 */
public final class RepositoryException extends Exception {
    /** Stable error names; each has the exit status of the tool (sysexits where one fits). */
    public enum Code {
        /** Another gc is running on the repository (EX_TEMPFAIL, as blksnapd's own data-directory lock). */
        LOCKED(75),
        /** No repository, point, or device of that name (EX_NOINPUT). */
        NOT_FOUND(66),
        /** A manifest, node, pack or chunk does not match its name or checksum (EX_DATAERR). */
        DAMAGED(65),
        /**
         * The key does not fit the repository: an encrypted repository opened without a key or with
         * another one, a key given for an unencrypted repository, or a key file that is missing,
         * unreadable or exists when one is to be made (EX_NOPERM). Nothing was written.
         */
        KEY(77),
        /** The repository has another format version than this tool reads (EX_DATAERR). */
        VERSION(65),
        /** The restore target is smaller than the point, or exists and is not replaceable (EX_CANTCREAT). */
        TARGET(73),
        /** The repository's filesystem is full (ENOSPC). */
        NO_SPACE(28),
        /** The source image could not be read over NBD, or an NBD target refused a write (EX_IOERR). */
        NBD(74),
        /** A local file could not be read or written (EX_IOERR). */
        IO(74);

        private final int exitStatus;

        Code(int exitStatus) {
            this.exitStatus = exitStatus;
        }

        /** The tool's exit status for this condition. */
        public int exitStatus() {
            return exitStatus;
        }
    }

    private final Code code;

    public RepositoryException(Code code, String message) {
        super(message);
        this.code = code;
    }

    public RepositoryException(Code code, String message, Throwable cause) {
        super(message, cause);
        this.code = code;
    }

    /** The stable name of this condition. */
    public Code code() {
        return code;
    }

    /** An I/O failure while doing {@code what}: ENOSPC becomes {@link Code#NO_SPACE}, the rest {@link Code#IO}. */
    static RepositoryException io(String what, java.io.IOException e) {
        String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        boolean full = m.contains("No space left on device");
        return new RepositoryException(full ? Code.NO_SPACE : Code.IO, what + ": " + m, e);
    }
}
