package org.blksnap.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.blksnap.cli.CliRun;
import org.blksnap.ctrl.ControlServer;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.ExternalTool.Result;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.LoggerFactory;

/**
 * blksnapd --max-control-connections as a user meets it: with the control API full (and more
 * connections knocking than may be refused politely), the CLI gets EAGAIN with the reason and exit
 * code 11, while NBD clients go on reading and writing; once the connections close the CLI is
 * served again.
 */
@Tag("system")
class ControlConnectionLimitDaemonTest {
    static final Duration T = Duration.ofSeconds(60);

    @TempDir
    Path dir;

    @Test
    void aFullControlApiRefusesTheCliWithEagainWhileNbdClientsAreServed() throws Exception {
        ExternalTool.require("nbdinfo", "qemu-io");
        Path data = dir.resolve("data");
        Path control = data.resolve("control.sock");
        Path nbd = data.resolve("nbd.sock");
        StringWriter w = new StringWriter();
        Blksnapd d = new Blksnapd();
        int rc = d.execute(new String[] {"--data-dir", data.toString(), "--listen", "none",
                "--device", "d0=" + dir.resolve("d0.img") + ":16M", "--max-control-connections", "2"},
                new PrintWriter(w), new PrintWriter(w), false);
        assertThat(rc).as(w.toString()).isZero();
        ListAppender<ILoggingEvent> logs = new ListAppender<>();
        logs.start();
        Logger controlLog = (Logger) LoggerFactory.getLogger(ControlServer.class);
        controlLog.addAppender(logs);
        List<SocketChannel> held = new ArrayList<>();
        try {
            for (int i = 0; i < 2; i++) {
                SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                ch.connect(UnixDomainSocketAddress.of(control));
                held.add(ch);
            }
            CliRun busy = await().atMost(T).until(() -> CliRun.run(control, "version"), r -> r.exitCode() != 0);
            assertThat(busy.exitCode()).as(busy.toString()).isEqualTo(11);
            assertThat(busy.err()).contains("EAGAIN").contains("too many control connections (2 connections already,"
                    + " the limit); try again later");
            // More knocking than may be refused politely: closed at once, and still no effect on NBD.
            for (int i = 0; i < 40; i++) {
                SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                ch.connect(UnixDomainSocketAddress.of(control));
                held.add(ch);
            }
            String uri = "nbd+unix:///d0?socket=" + nbd;
            Result info = ExternalTool.run(T, "nbdinfo", "--json", uri).assertSuccess();
            assertThat(info.stdout()).contains("\"export-size\": " + (16 << 20));
            Result io = ExternalTool.run(T, List.of("qemu-io", "-f", "raw", "-c", "write -P 0x3c 1M 4M",
                    "-c", "read -P 0x3c 1M 4M", "-c", "flush", uri)).assertSuccess();
            assertThat(io.stdout()).doesNotContain("Pattern verification failed");
            // EAGAIN (11) once the flood's refusals have timed out, or a connection closed without an answer (76,
            // "broken answer") while 16 refusals still run
            CliRun flooded = CliRun.run(control, "version");
            assertThat(flooded.exitCode()).as(flooded.toString()).isIn(11, 76);
            assertThat(logs.list).extracting(ILoggingEvent::getFormattedMessage)
                    .contains("refusing a control connection: 2 connections already, the limit");

            for (SocketChannel ch : held) {
                ch.close();
            }
            held.clear();
            CliRun ok = await().atMost(T).until(() -> CliRun.run(control, "version"), r -> r.exitCode() == 0);
            assertThat(ok.out()).isNotBlank();
        } finally {
            controlLog.detachAppender(logs);
            for (SocketChannel ch : held) {
                ch.close();
            }
            d.daemon().close();
        }
    }

    @Test
    void aLimitBelowOneStopsTheStart() {
        StringWriter w = new StringWriter();
        int rc = new Blksnapd().execute(new String[] {"--data-dir", dir.resolve("d").toString(), "--listen", "none",
                "--device", "d0=" + dir.resolve("d0.img") + ":1M", "--max-control-connections", "0"},
                new PrintWriter(w), new PrintWriter(w), false);
        assertThat(rc).isEqualTo(64);
        assertThat(w.toString()).contains("--max-control-connections (0) must be >= 1");
    }
}
