package org.blksnap.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link SystemdNotify} against a real AF_UNIX datagram socket (python3 plays systemd). */
@Tag("system")
class SystemdNotifyTest {
    /** Binds {@code address} (a path, or "\0name" for an abstract one), prints one datagram, exits. */
    private static Process receiver(String address) throws Exception {
        Process p = new ProcessBuilder("python3", "-u", "-c", """
                import socket, sys
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                s.bind(sys.argv[1].replace("@", "\\0", 1) if sys.argv[1].startswith("@") else sys.argv[1])
                s.settimeout(30)
                print("BOUND", flush=True)
                print(s.recv(4096).decode().replace("\\n", "|"), flush=True)
                """, address).start();
        String first = p.inputReader(StandardCharsets.UTF_8).readLine();
        assertThat(first).isEqualTo("BOUND");
        return p;
    }

    private static String received(Process p) throws Exception {
        String line = p.inputReader(StandardCharsets.UTF_8).readLine();
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
        return line;
    }

    @Test
    void sendsToAPathSocket(@TempDir Path dir) throws Exception {
        Path sock = dir.resolve("notify");
        Process p = receiver(sock.toString());
        assertThat(SystemdNotify.send(sock.toString(), "READY=1\nSTATUS=up")).isTrue();
        assertThat(received(p)).isEqualTo("READY=1|STATUS=up");
    }

    @Test
    void sendsToAnAbstractSocket() throws Exception {
        String name = "@blksnap-notify-test-" + ProcessHandle.current().pid();
        Process p = receiver(name);
        assertThat(SystemdNotify.send(name, "STOPPING=1")).isTrue();
        assertThat(received(p)).isEqualTo("STOPPING=1");
    }

    @Test
    void withoutASocketNothingIsSentAndNothingFails(@TempDir Path dir) throws Exception {
        assertThat(SystemdNotify.send(null, "READY=1")).isFalse();
        assertThat(SystemdNotify.send("", "READY=1")).isFalse();
        assertThat(SystemdNotify.send("relative/path", "READY=1")).isFalse();
        // A path nobody listens on: sendto fails, the daemon goes on.
        assertThat(SystemdNotify.send(dir.resolve("nobody").toString(), "READY=1")).isFalse();
        assertThat(Files.exists(dir.resolve("nobody"))).isFalse();
    }
}
