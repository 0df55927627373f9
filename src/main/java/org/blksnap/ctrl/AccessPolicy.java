package org.blksnap.ctrl;

import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.UserPrincipal;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * Who may use the control API, and which files a caller that is not root may make the daemon open:
 * the daemon's side ({@code daemon.ControlAccess}), reached from the control server only through this
 * seam, so the rules live in one place. The server asks {@link #admit} with the peer credentials of
 * every request's connection ({@code SO_PEERCRED}) and passes every path a request names through
 * {@link #withPath}.
 *
 * <p>Implementations must be thread-safe: requests run concurrently on virtual threads.
 */
public interface AccessPolicy {

    /**
     * Who is calling.
     *
     * @param user       the peer's user
     * @param group      the peer's primary group
     * @param privileged root or the daemon's own user: no path rules apply (as before peer credentials
     *                   were checked); false for a member of the control group
     */
    record Caller(UserPrincipal user, GroupPrincipal group, boolean privileged) {
        /** {@code user NAME} for messages and logs. */
        public String describe() {
            return "user " + user.getName() + " (group " + group.getName() + ")";
        }
    }

    /**
     * Admits a peer or refuses it.
     *
     * @param user  the peer's user, from {@code SO_PEERCRED}
     * @param group the peer's primary group, from {@code SO_PEERCRED}
     * @return the caller
     * @throws org.blksnap.engine.BlksnapException EPERM the peer may not use the control API
     */
    Caller admit(UserPrincipal user, GroupPrincipal group);

    /**
     * The group the control socket is given (mode 0660), or null to keep it 0600.
     */
    GroupPrincipal socketGroup();

    /**
     * Runs an operation that opens (or creates) the file or directory {@code path} named by the
     * caller. A privileged caller's path is used as given. For any other caller the path must lie
     * in an allowed directory once symbolic links are resolved, an existing file must be one the
     * caller could write itself, the operation is given the resolved path, and after it ran, if it
     * turns out to have opened a file outside the allowed directories (a directory swapped for a
     * symbolic link in between), it is undone with {@code undo} and refused.
     *
     * @param what  what the path is for, in messages (e.g. {@code append-storage path})
     * @param use   the operation, given the path to open
     * @param undo  takes back what {@code use} did (called only when it must be refused afterwards)
     * @return what {@code use} returned
     * @throws org.blksnap.engine.BlksnapException EPERM the caller may not name that path; ENOENT its
     *         directory does not exist; anything {@code use} throws
     */
    <T> T withPath(Caller caller, Path path, String what, Function<Path, T> use, Consumer<T> undo);

    /**
     * The control API as it was before peer credentials were checked: whoever can connect to the
     * 0600 socket is privileged. For tests of the control layer that do not test access.
     */
    AccessPolicy SOCKET_MODE_ONLY = new AccessPolicy() {
        @Override
        public Caller admit(UserPrincipal user, GroupPrincipal group) {
            return new Caller(user, group, true);
        }

        @Override
        public GroupPrincipal socketGroup() {
            return null;
        }

        @Override
        public <T> T withPath(Caller caller, Path path, String what, Function<Path, T> use, Consumer<T> undo) {
            return use.apply(path);
        }
    };
}
