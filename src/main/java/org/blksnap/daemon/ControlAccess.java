package org.blksnap.daemon;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.nio.file.attribute.UserPrincipal;
import java.nio.file.attribute.UserPrincipalLookupService;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Function;
import org.blksnap.ctrl.AccessPolicy;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.device.BlockDevices;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The daemon's access rules for the control API (docs/control-api.md, "Who may call"):
 * <ul>
 *   <li>root and the daemon's own user are privileged: everything, any path, as before;</li>
 *   <li>with {@code --control-group G}, a user whose primary group is G or who is listed as a
 *       member of G in the group database ({@code getent group G}) may call too, but every path it
 *       names must lie in an {@code --allow-path} directory once symbolic links are resolved, and
 *       an existing file must be a regular file with one link that the caller could write itself
 *       (its owner with the owner-write bit, or writable by everyone); the operation gets the
 *       resolved path;</li>
 *   <li>everybody else is refused (EPERM).</li>
 * </ul>
 * Between the check and the open, a caller that can write a directory on the way could swap it
 * for a symbolic link; so after the operation the daemon's open files ({@code /proc/self/fd}) are
 * compared with those before, and a new one outside the allowed directories, the data directory
 * and the Java runtime undoes the operation and refuses it.
 *
 * <p>Thread-safe. The group's member list is read at most every {@value #MEMBERS_TTL_SECONDS} s.
 */
final class ControlAccess implements AccessPolicy {
    private static final Logger LOG = LoggerFactory.getLogger(ControlAccess.class);
    static final long MEMBERS_TTL_SECONDS = 10;

    private final UserPrincipal root;
    private final UserPrincipal self;
    private final String groupName;
    private final GroupPrincipal group;
    private final List<Path> allowedDirs;
    private final List<Path> trustedDirs;
    private final Object membersLock = new Object();
    private List<String> members = List.of();
    private long membersReadNanos;
    private boolean membersEverRead;

    /**
     * @param groupName   the control group, or null (only root and the daemon's user may call)
     * @param allowedDirs directories a group member's paths may lie in (resolved here; each must exist)
     * @param dataDir     the data directory (the daemon's own files, never a caller's)
     * @throws BlksnapException EINVAL an unknown group, or an allowed directory that is not one
     */
    static ControlAccess create(String groupName, List<Path> allowedDirs, Path dataDir) {
        UserPrincipalLookupService lookup = FileSystems.getDefault().getUserPrincipalLookupService();
        try {
            UserPrincipal root = lookup.lookupPrincipalByName("root");
            UserPrincipal self = lookup.lookupPrincipalByName(System.getProperty("user.name"));
            GroupPrincipal group = null;
            if (groupName != null) {
                try {
                    group = lookup.lookupPrincipalByGroupName(groupName);
                } catch (IOException e) {
                    throw new BlksnapException(Errno.EINVAL, "--control-group '" + groupName + "': no such group");
                }
            }
            List<Path> dirs = new ArrayList<>();
            for (Path d : allowedDirs) {
                Path real;
                try {
                    real = d.toAbsolutePath().toRealPath();
                } catch (IOException e) {
                    throw new BlksnapException(Errno.EINVAL, "--allow-path '" + d + "': " + e.getMessage());
                }
                if (!Files.isDirectory(real)) {
                    throw new BlksnapException(Errno.EINVAL, "--allow-path '" + d + "' is not a directory");
                }
                dirs.add(real);
            }
            List<Path> trusted = new ArrayList<>();
            trusted.add(realOrSelf(dataDir));
            trusted.add(realOrSelf(Path.of(System.getProperty("java.home"))));
            for (String entry : System.getProperty("java.class.path", "").split(File.pathSeparator)) {
                if (!entry.isBlank()) {
                    trusted.add(realOrSelf(Path.of(entry))); // jars the JVM may open on a class's first use
                }
            }
            return new ControlAccess(root, self, groupName, group, dirs, trusted);
        } catch (IOException e) {
            throw new BlksnapException(Errno.EIO, "cannot look up users and groups: " + e.getMessage(), e);
        }
    }

    private ControlAccess(UserPrincipal root, UserPrincipal self, String groupName, GroupPrincipal group,
                          List<Path> allowedDirs, List<Path> trustedDirs) {
        this.root = root;
        this.self = self;
        this.groupName = groupName;
        this.group = group;
        this.allowedDirs = List.copyOf(allowedDirs);
        this.trustedDirs = List.copyOf(trustedDirs);
    }

    private static Path realOrSelf(Path p) {
        try {
            return p.toAbsolutePath().toRealPath();
        } catch (IOException e) {
            return p.toAbsolutePath().normalize();
        }
    }

    @Override
    public Caller admit(UserPrincipal user, GroupPrincipal primaryGroup) {
        if (user.equals(root) || user.equals(self)) {
            return new Caller(user, primaryGroup, true);
        }
        if (group == null) {
            throw new BlksnapException(Errno.EPERM, "user " + user.getName() + " may not use the control API: only root"
                    + " (and the daemon's user " + self.getName() + ") may; blksnapd --control-group admits a group");
        }
        if (primaryGroup.equals(group) || members().contains(user.getName())) {
            return new Caller(user, primaryGroup, false);
        }
        throw new BlksnapException(Errno.EPERM, "user " + user.getName() + " may not use the control API: it is"
                + " neither root nor a member of the control group " + groupName);
    }

    @Override
    public GroupPrincipal socketGroup() {
        return group;
    }

    /** The group's members as the group database lists them, re-read at most every 10 s. */
    private List<String> members() {
        synchronized (membersLock) {
            long now = System.nanoTime();
            if (!membersEverRead || now - membersReadNanos > TimeUnit.SECONDS.toNanos(MEMBERS_TTL_SECONDS)) {
                members = readMembers(groupName);
                membersReadNanos = now;
                membersEverRead = true;
            }
            return members;
        }
    }

    /** {@code getent group NAME} (the group database through NSS): NAME:x:GID:user1,user2. */
    private static List<String> readMembers(String groupName) {
        try {
            Process p = new ProcessBuilder("getent", "group", groupName).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
            if (!p.waitFor(5, TimeUnit.SECONDS) || p.exitValue() != 0) {
                LOG.warn("getent group {} failed: {}", groupName, out);
                return List.of();
            }
            String[] fields = out.split(":", -1);
            return fields.length < 4 || fields[3].isBlank() ? List.of() : List.of(fields[3].split(","));
        } catch (IOException e) {
            LOG.warn("getent group {} failed: {}", groupName, e.toString());
            return List.of();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return List.of();
        }
    }

    @Override
    public <T> T withPath(Caller caller, Path path, String what, Function<Path, T> use, Consumer<T> undo) {
        if (caller.privileged()) {
            return use.apply(path);
        }
        Path real = check(caller, path, what);
        Map<String, String> before = openFiles();
        T result = use.apply(real);
        List<String> outside = new ArrayList<>();
        for (Map.Entry<String, String> e : openFiles().entrySet()) {
            String target = e.getValue();
            if (target.equals(before.get(e.getKey())) || !target.startsWith("/")) {
                continue; // open before, or not a file (socket:, pipe:, anon_inode:)
            }
            boolean deleted = target.endsWith(" (deleted)");
            Path p = Path.of(deleted ? target.substring(0, target.length() - 10) : target);
            if (!deleted && !Files.isRegularFile(p) && !isBlockDevice(p)) {
                continue; // /dev/urandom, a terminal, a directory stream: nothing the operation writes
            }
            if (!under(p, allowedDirs) && !under(p, trustedDirs)) {
                outside.add(target);
            }
        }
        if (!outside.isEmpty()) {
            try {
                undo.accept(result);
            } catch (RuntimeException u) {
                LOG.error("{} {}: undoing an operation that opened {} failed", caller.describe(), what, outside, u);
            }
            LOG.warn("{}: {} {} resolved to {} but the daemon opened {}: undone and refused (a directory was"
                    + " replaced by a symbolic link during the call?)", caller.describe(), what, path, real, outside);
            throw new BlksnapException(Errno.EPERM, what + " '" + path + "': the file opened was not the one checked ("
                    + outside + "), so the call was undone");
        }
        return result;
    }

    /**
     * Resolves {@code path} (symbolic links on the way and of the file itself) and checks it
     * against the rules; returns the resolved path.
     */
    private Path check(Caller caller, Path path, String what) {
        if (allowedDirs.isEmpty()) {
            throw refuse(caller, what, path, "no --allow-path directory is configured for callers that are not root");
        }
        Path abs = path.toAbsolutePath().normalize();
        Path parent = abs.getParent();
        if (parent == null || abs.getFileName() == null) {
            throw refuse(caller, what, path, "not a file in an allowed directory");
        }
        Path real;
        try {
            if (Files.exists(abs, LinkOption.NOFOLLOW_LINKS)) {
                real = abs.toRealPath();
            } else {
                real = parent.toRealPath().resolve(abs.getFileName());
                if (Files.exists(real, LinkOption.NOFOLLOW_LINKS)) { // a dangling link, or created meanwhile
                    throw refuse(caller, what, path, "it changed while it was checked");
                }
            }
        } catch (NoSuchFileException e) {
            throw new BlksnapException(Errno.ENOENT, what + " '" + path + "': no such file or directory: "
                    + e.getFile());
        } catch (IOException e) {
            throw new BlksnapException(Errno.EIO, what + " '" + path + "': cannot resolve: " + e.getMessage(), e);
        }
        if (!under(real, allowedDirs)) {
            throw refuse(caller, what, path, (real.equals(abs) ? "" : "it resolves to " + real + ", which is ")
                    + "outside the allowed directories " + allowedDirs);
        }
        if (Files.exists(real, LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(real, LinkOption.NOFOLLOW_LINKS)) {
            checkWritable(caller, what, path, real);
        }
        return real;
    }

    /** An existing file must be one the caller could write itself, and not a hard link to another. */
    private void checkWritable(Caller caller, String what, Path path, Path real) {
        try {
            PosixFileAttributes a = Files.readAttributes(real, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
            int links = (Integer) Files.getAttribute(real, "unix:nlink", LinkOption.NOFOLLOW_LINKS);
            Set<PosixFilePermission> perms = a.permissions();
            if (!a.isRegularFile()) {
                throw refuse(caller, what, path, real + " is not a regular file");
            }
            if (links != 1) {
                throw refuse(caller, what, path, real + " has " + links + " links");
            }
            boolean writable = a.owner().equals(caller.user()) && perms.contains(PosixFilePermission.OWNER_WRITE)
                    || perms.contains(PosixFilePermission.OTHERS_WRITE);
            if (!writable) {
                throw refuse(caller, what, path, real + " belongs to " + a.owner().getName() + " (mode "
                        + PosixFilePermissions.toString(perms) + ") and "
                        + caller.user().getName() + " could not write it");
            }
        } catch (IOException e) {
            throw new BlksnapException(Errno.EIO, what + " '" + path + "': cannot read its attributes: " + e.getMessage(), e);
        }
    }

    private static BlksnapException refuse(Caller caller, String what, Path path, String why) {
        LOG.warn("{}: {} '{}' refused: {}", caller.describe(), what, path, why);
        return new BlksnapException(Errno.EPERM, what + " '" + path + "' is not allowed for " + caller.describe() + ": "
                + why);
    }

    private static boolean isBlockDevice(Path p) {
        try {
            return BlockDevices.isBlockDevice(p);
        } catch (IOException e) {
            return false;
        }
    }

    private static boolean under(Path p, List<Path> dirs) {
        for (Path d : dirs) {
            if (p.startsWith(d)) {
                return true;
            }
        }
        return false;
    }

    /** The daemon's open file descriptors and what each points to ({@code readlink /proc/self/fd/N}). */
    private static Map<String, String> openFiles() {
        Map<String, String> fds = new HashMap<>();
        try (var dir = Files.newDirectoryStream(Path.of("/proc/self/fd"))) {
            for (Path fd : dir) {
                try {
                    fds.put(fd.getFileName().toString(), Files.readSymbolicLink(fd).toString());
                } catch (IOException e) {
                    // closed meanwhile (or the directory stream's own descriptor)
                }
            }
        } catch (IOException e) {
            throw new BlksnapException(Errno.EIO, "cannot list the daemon's open files: " + e.getMessage(), e);
        }
        return fds;
    }
}
