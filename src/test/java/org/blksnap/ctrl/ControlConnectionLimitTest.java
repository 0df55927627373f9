package org.blksnap.ctrl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
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
import org.slf4j.LoggerFactory;

/**
 * The limit on control connections: beyond it every request is answered EAGAIN with the reason and
 * the connection closed; beyond the refusals that may run at once a connection is closed without a
 * word; each refusal leaves a (rate-limited) log line; once connections close, calls are served again.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ControlConnectionLimitTest {
    static final int LIMIT = 3;
    @TempDir
    Path dir;
    ControlServer server;
    Path socket;
    final List<SocketChannel> open = new ArrayList<>();
    final ListAppender<ILoggingEvent> logs = new ListAppender<>();

    @BeforeEach
    void start() throws Exception {
        socket = dir.resolve("control.sock");
        server = ControlServer.start(new FakeBlksnap(), new FakeDevices(), socket, name -> "nbd://x/" + name,
                cmd -> new FreezeHooks.CommandRunner.Result(0, ""), ev -> {
                }, ControlServer.IDLE_TIMEOUT, LIMIT);
        logs.start();
        ((Logger) LoggerFactory.getLogger(ControlServer.class)).addAppender(logs);
    }

    @AfterEach
    void stop() throws Exception {
        ((Logger) LoggerFactory.getLogger(ControlServer.class)).detachAppender(logs);
        for (SocketChannel ch : open) {
            ch.close();
        }
        server.close();
    }

    SocketChannel connect() throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        open.add(ch);
        ch.connect(UnixDomainSocketAddress.of(socket));
        return ch;
    }

    List<String> lines() {
        return logs.list.stream().map(ILoggingEvent::getFormattedMessage).toList();
    }

    @Test
    void requestsBeyondTheLimitGetEagainAndAreServedAgainOnceConnectionsClose() throws Exception {
        List<SocketChannel> idle = new ArrayList<>();
        for (int i = 0; i < LIMIT; i++) {
            idle.add(connect());
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> server.connectionCount() == LIMIT);

        RawHttp.Reply busy = RawHttp.send(socket, "GET", "/v1/version", null);
        assertThat(busy.status()).isEqualTo(503);
        assertThat(busy.errorName()).as(busy.body()).isEqualTo("EAGAIN");
        assertThat(busy.body()).contains("too many control connections (3 connections already, the limit); try again later");
        RawHttp.Reply busyPost = RawHttp.send(socket, "POST", "/v1/snapshot/create", "{\"devices\":[\"disk0\"]}");
        assertThat(busyPost.errorName()).as("a body is read and dropped, the answer arrives").isEqualTo("EAGAIN");
        // A client that keeps its connection gets the answer, then the end of the connection.
        SocketChannel keepAlive = ControlSocketLimitsTest.sendOn(connect(),
                "GET /v1/version HTTP/1.1\r\nHost: x\r\n\r\n");
        assertThat(ControlSocketLimitsTest.readToEnd(keepAlive)).startsWith("HTTP/1.1 503").contains("EAGAIN")
                .containsIgnoringCase("Connection: close");
        assertThat(lines()).anyMatch(l -> l.equals("refusing a control connection: 3 connections already, the limit"));

        for (SocketChannel ch : idle) {
            ch.close();
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> server.connectionCount() == 0);
        RawHttp.Reply ok = RawHttp.send(socket, "GET", "/v1/version", null);
        assertThat(ok.status()).as(ok.body()).isEqualTo(200);
    }

    @Test
    void beyondTheRefusalsThatMayRunAConnectionIsClosedAtOnce() throws Exception {
        for (int i = 0; i < LIMIT; i++) {
            connect();
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> server.connectionCount() == LIMIT);
        for (int i = 0; i < ControlServer.MAX_REFUSING; i++) {
            connect(); // refused, held open for its answer
        }
        SocketChannel dropped = connect();
        assertThat(ControlSocketLimitsTest.readToEnd(dropped)).isEmpty();
        await().atMost(Duration.ofSeconds(10)).until(() -> lines().stream().anyMatch(l -> l.equals(
                "refused a control connection by closing it: 3 connections already, the limit, and 16 refusals running")));
        // The refused connections that never send a request are closed after REFUSAL_IDLE, the served ones not.
        for (int i = LIMIT; i < open.size() - 1; i++) {
            assertThat(ControlSocketLimitsTest.readToEnd(open.get(i))).isEmpty();
        }
        assertThat(server.connectionCount()).isEqualTo(LIMIT);
    }
}
