package org.blksnap.ctrl;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Slow and oversized control-API clients: a client that sends half a request (line, headers or
 * body) and stalls holds up no other request and is cut off after the idle timeout; a body over
 * 1 MiB is refused without being read into memory; a wait-event longer than the idle timeout is
 * not cut by it.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ControlSocketLimitsTest {
    static final Duration IDLE = Duration.ofSeconds(1);
    @TempDir
    Path dir;
    FakeBlksnap engine;
    ControlServer server;
    Path socket;
    final List<SocketChannel> open = new ArrayList<>();

    @BeforeEach
    void start() throws Exception {
        engine = new FakeBlksnap();
        socket = dir.resolve("control.sock");
        server = ControlServer.start(engine, new FakeDevices(), socket, name -> "nbd://x/" + name,
                cmd -> new FreezeHooks.CommandRunner.Result(0, ""), ev -> {
                }, IDLE);
    }

    @AfterEach
    void stop() throws Exception {
        for (SocketChannel ch : open) {
            ch.close();
        }
        server.close();
    }

    SocketChannel send(String text) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        open.add(ch);
        ch.connect(UnixDomainSocketAddress.of(socket));
        return sendOn(ch, text);
    }

    /** Writes {@code text} on a connected channel; returns it. */
    static SocketChannel sendOn(SocketChannel ch, String text) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(text.getBytes(StandardCharsets.US_ASCII));
        while (b.hasRemaining()) {
            ch.write(b);
        }
        return ch;
    }

    /** Reads until the server closes; the text read. */
    static String readToEnd(SocketChannel ch) throws IOException {
        StringBuilder sb = new StringBuilder();
        ByteBuffer b = ByteBuffer.allocate(8192);
        try {
            while (ch.read(b.clear()) >= 0) {
                sb.append(new String(b.array(), 0, b.position(), StandardCharsets.UTF_8));
            }
        } catch (IOException e) {
            // reset: closed as well
        }
        return sb.toString();
    }

    @Test
    void clientsThatStallMidRequestHoldUpNoOneAndAreCutOffAfterTheIdleTimeout() throws Exception {
        SocketChannel halfLine = send("POST /v1/ver");
        SocketChannel halfHeaders = send("POST /v1/snapshot/create HTTP/1.1\r\nHost: x\r\nContent-Le");
        SocketChannel halfBody = send("POST /v1/snapshot/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                + "{\"devices\":");
        for (int i = 0; i < 5; i++) {
            assertThat(RawHttp.send(socket, "GET", "/v1/version", null).status()).isEqualTo(200);
        }
        long start = System.nanoTime();
        readToEnd(halfLine);
        readToEnd(halfHeaders);
        String body = readToEnd(halfBody);
        assertThat(Duration.ofNanos(System.nanoTime() - start)).as("all cut off after about the idle timeout")
                .isLessThan(Duration.ofSeconds(20));
        assertThat(body).as("a stalled body is never taken for a request").doesNotContain("\"id\"");
        assertThat(engine.calls).as("no half request reached the engine").noneMatch(c -> c.startsWith("snapshotCreate"));
        assertThat(RawHttp.send(socket, "GET", "/v1/version", null).status()).isEqualTo(200);
    }

    @Test
    void aBodyOverOneMebibyteIsRefusedWithoutReadingIt() throws Exception {
        SocketChannel big = send("POST /v1/snapshot/create HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n{");
        String answer = readToEnd(big);
        assertThat(answer).startsWith("HTTP/1.1 400").contains("EINVAL").contains("exceeds 1048576");
        assertThat(engine.calls).noneMatch(c -> c.startsWith("snapshotCreate"));
    }

    /** Found by fuzzing (ControlApiFuzzTestInputs/requestBody/finding-get-with-body-reset). */
    @Test
    void aGetWithABodyIsAnsweredAfterTheBodyIsReadSoTheClientIsNotReset() throws Exception {
        byte[] body = new byte[512 << 10];
        java.util.Arrays.fill(body, (byte) ' ');
        SocketChannel ch = send("GET /v1/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
                + body.length + "\r\n\r\n");
        Thread.sleep(200); // the server has the headers and may answer before the body
        ByteBuffer b = ByteBuffer.wrap(body);
        while (b.hasRemaining()) {
            ch.write(b); // a reset here was the bug
        }
        assertThat(readToEnd(ch)).startsWith("HTTP/1.1 200").contains("\"version\"");
    }

    @Test
    void aWaitEventLongerThanTheIdleTimeoutIsNotCutByIt() throws Exception {
        String id = RawHttp.send(socket, "POST", "/v1/snapshot/create", "{\"devices\":[\"disk0\"]}").json()
                .path("id").asString();
        RawHttp.send(socket, "POST", "/v1/snapshot/wait-event", "{\"id\":\"" + id + "\",\"timeoutMs\":0}"); // the fake's first event
        long start = System.nanoTime();
        RawHttp.Reply r = RawHttp.send(socket, "POST", "/v1/snapshot/wait-event",
                "{\"id\":\"" + id + "\",\"timeoutMs\":" + 3 * IDLE.toMillis() + "}");
        assertThat(r.errorName()).as(r.body()).isEqualTo("ENOENT"); // the wait's own timeout, not a cut connection
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isGreaterThanOrEqualTo(IDLE.multipliedBy(3));
    }
}
