package org.blksnap.daemon;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The systemd notification protocol ({@code sd_notify(3)}): a datagram such as {@code READY=1} sent to
 * the {@code AF_UNIX} datagram socket named by {@code $NOTIFY_SOCKET}, so a {@code Type=notify} unit
 * is "started" only once the daemon serves. The JDK has no Unix datagram sockets, so the four libc
 * calls go through FFM. Without {@code NOTIFY_SOCKET} (not under systemd) every call does nothing.
 *
 * <p>Message layout: newline-separated {@code KEY=VALUE} assignments, as systemd reads them; the
 * address is a {@code sockaddr_un} (2-byte family {@code AF_UNIX}, then the path, at most 107
 * bytes; a leading {@code @} names the abstract namespace and is sent as a NUL byte).
 *
 * <p>Thread-safe (each call opens and closes its own socket). Failures are logged once per call and
 * never thrown: a daemon that cannot notify still serves, and systemd then reports the start timeout.
 */
final class SystemdNotify {
    private static final Logger LOG = LoggerFactory.getLogger(SystemdNotify.class);
    private static final short AF_UNIX = 1;
    private static final int SOCK_DGRAM = 2;
    private static final int SOCK_CLOEXEC = 0x80000;
    private static final int SUN_PATH_BYTES = 108;
    private static final int MSG_NOSIGNAL = 0x4000;

    private SystemdNotify() {
    }

    /** {@code READY=1} with the main pid and a status line. */
    static boolean ready(String status) {
        return send("READY=1\nMAINPID=" + ProcessHandle.current().pid() + "\nSTATUS=" + status);
    }

    /** {@code STOPPING=1}: the daemon has begun its shutdown. */
    static boolean stopping() {
        return send("STOPPING=1\nSTATUS=shutting down");
    }

    /**
     * Sends one message to {@code $NOTIFY_SOCKET}.
     *
     * @return true if it was sent, false if there is no socket to send to or sending failed
     */
    static boolean send(String message) {
        return send(System.getenv("NOTIFY_SOCKET"), message);
    }

    @SuppressWarnings("restricted")
    static boolean send(String socketPath, String message) {
        if (socketPath == null || socketPath.isEmpty()) {
            return false;
        }
        byte[] path = socketPath.getBytes(StandardCharsets.UTF_8);
        if (path.length >= SUN_PATH_BYTES || (path[0] != '/' && path[0] != '@')) {
            LOG.warn("NOTIFY_SOCKET '{}' is not an absolute or abstract socket path; not notifying systemd", socketPath);
            return false;
        }
        if (path[0] == '@') {
            path[0] = 0;
        }
        try (Arena arena = Arena.ofConfined()) {
            Linker linker = Linker.nativeLinker();
            var libc = linker.defaultLookup();
            MethodHandle socket = linker.downcallHandle(libc.find("socket").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                            ValueLayout.JAVA_INT));
            MethodHandle sendto = linker.downcallHandle(libc.find("sendto").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                            ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
            MethodHandle close = linker.downcallHandle(libc.find("close").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
            int fd = (int) socket.invokeExact((int) AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                LOG.warn("cannot open a socket to notify systemd at {}", socketPath);
                return false;
            }
            try {
                MemorySegment addr = arena.allocate(2 + SUN_PATH_BYTES);
                addr.set(ValueLayout.JAVA_SHORT, 0, AF_UNIX);
                MemorySegment.copy(path, 0, addr, ValueLayout.JAVA_BYTE, 2, path.length);
                // An abstract address is exactly as long as its name; a path one is NUL-terminated.
                int addrLen = 2 + path.length + (path[0] == 0 ? 0 : 1);
                byte[] msg = message.getBytes(StandardCharsets.UTF_8);
                MemorySegment buf = arena.allocateFrom(ValueLayout.JAVA_BYTE, msg);
                long sent = (long) sendto.invokeExact(fd, buf, (long) msg.length, MSG_NOSIGNAL, addr, addrLen);
                if (sent != msg.length) {
                    LOG.warn("notifying systemd at {} failed", socketPath);
                    return false;
                }
                return true;
            } finally {
                int ignored = (int) close.invokeExact(fd);
            }
        } catch (Throwable t) {
            LOG.warn("notifying systemd at {} failed: {}", socketPath, t.toString());
            return false;
        }
    }
}
