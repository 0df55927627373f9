package org.blksnap.cli;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import org.blksnap.ctrl.api.Size;
import org.blksnap.serve.PointServer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code blksnap serve}: instant access to every point of a repository over NBD, in the foreground
 * until SIGTERM or Ctrl-C (docs/serve.md). Needs no daemon. The server is {@link PointServer}; this
 * class parses the options, prints the exports and waits.
 */
@Command(name = "serve", footer = ServeCmd.FOOTER, description = "Serve every point of a repository over NBD as a read-only "
        + "export POINT_ID/DEVICE (chunks read on demand), in the foreground until SIGTERM or Ctrl-C; --writable adds a "
        + "temporary overlay per export.")
final class ServeCmd extends Commands.Base {
    static final String FOOTER = "%nExit status: 0 never (it runs until stopped; SIGTERM and Ctrl-C stop it cleanly, "
            + "status 143 or 130); 65 damaged or another format version; 66 no repository; 74 the socket, address or "
            + "overlay directory cannot be used, or the S3 server fails; 77 the key does not fit the repository; 64 usage.";
    static final String DEFAULT_LISTEN = "127.0.0.1:10809";

    @picocli.CommandLine.Mixin
    BackupCommands.RepoOptions repo;
    @Option(names = "--socket", paramLabel = "PATH", description = "listen on this Unix socket (removed at exit)")
    Path socket;
    @Option(names = "--listen", paramLabel = "HOST:PORT",
            description = "listen on this TCP address (default " + DEFAULT_LISTEN + " when no --socket is given; port 0: any)")
    String listen;
    @Option(names = "--writable", description = "let clients write: writes go to a sparse temporary overlay per export, "
            + "never to the repository, and are gone at exit")
    boolean writable;
    @Option(names = "--cache", paramLabel = "SIZE", defaultValue = "256M",
            description = "bound of the cache of decompressed chunks and index nodes (default ${DEFAULT-VALUE})")
    Size cache;
    @Option(names = "--read-ahead", paramLabel = "SIZE", defaultValue = "8M",
            description = "largest read-ahead window of a sequential reader (default ${DEFAULT-VALUE})")
    Size readAhead;
    @Option(names = "--overlay-dir", paramLabel = "DIR", defaultValue = "/var/tmp",
            description = "where the overlays of --writable are made (default ${DEFAULT-VALUE})")
    Path overlayDir;

    /** One export of {@code serve}. */
    record ServedExport(String name, String uri) {
    }

    /** What {@code serve} prints when it is ready. */
    record ServeReport(String repo, String socket, String listen, boolean writable, List<ServedExport> exports) {
    }

    @Override
    public Integer call() throws Exception {
        Cli cli = cli();
        String host = null;
        int port = 0;
        String address = listen != null ? listen : socket == null ? DEFAULT_LISTEN : null;
        if (address != null) {
            int colon = address.lastIndexOf(':');
            if (colon <= 0) {
                throw usage("--listen (" + address + ") must be HOST:PORT, e.g. " + DEFAULT_LISTEN);
            }
            host = address.substring(0, colon).replaceAll("^\\[(.*)]$", "$1");
            try {
                port = Integer.parseInt(address.substring(colon + 1));
            } catch (NumberFormatException e) {
                throw usage("--listen (" + address + "): the port must be a number within 0..65535");
            }
            if (port < 0 || port > 65535) {
                throw usage("--listen (" + address + "): the port must be within 0..65535");
            }
        }
        org.blksnap.backup.RepositoryLocation where = repo.location();
        PointServer.Config config = new PointServer.Config(where, repo.key(), socket, host, port, writable,
                cache.bytes(), overlayDir.toAbsolutePath(), readAhead.bytes());
        PointServer server;
        try {
            server = PointServer.start(config, m -> cli.warn("serve: " + m));
        } catch (IOException e) {
            throw new Cli.LocalIoException(e.getMessage(), e);
        }
        CountDownLatch stopped = new CountDownLatch(1);
        Thread hook = new Thread(() -> {
            try {
                server.close();
                cli.warn("serve: stopped; " + server.statsLine());
            } catch (IOException e) {
                cli.warn("serve: " + e.getMessage());
            } finally {
                stopped.countDown();
            }
        }, "blksnap-serve-stop");
        Runtime.getRuntime().addShutdownHook(hook);
        String unixUri = server.socket() == null ? null : "nbd+unix:///%s?socket=" + server.socket();
        String tcpUri = server.tcpAddress() == null ? null
                : "nbd://" + hostForUri(server.tcpAddress().getHostString()) + ":" + server.tcpAddress().getPort() + "/%s";
        List<ServedExport> exports = new ArrayList<>();
        for (String name : server.exportNames()) {
            exports.add(new ServedExport(name, String.format(tcpUri != null ? tcpUri : unixUri, name)));
        }
        ServeReport report = new ServeReport(where.toString(),
                server.socket() == null ? null : server.socket().toString(),
                server.tcpAddress() == null ? null : hostForUri(server.tcpAddress().getHostString()) + ":"
                        + server.tcpAddress().getPort(), writable, exports);
        cli.print(report, r -> {
            List<String> lines = new ArrayList<>();
            lines.add("serving " + r.exports().size() + " point(s) of " + r.repo() + (r.writable()
                    ? " (writable: writes go to temporary overlays)" : " (read-only)") + " on "
                    + String.join(" and ", java.util.stream.Stream.of(r.socket() == null ? null : "unix socket " + r.socket(),
                            r.listen() == null ? null : "tcp " + r.listen()).filter(java.util.Objects::nonNull).toList())
                    + "; new points are served as they appear; SIGTERM or Ctrl-C stops");
            r.exports().forEach(x -> lines.add(x.name() + " " + x.uri()));
            return String.join("\n", lines);
        });
        stopped.await();
        return ExitCodes.OK;
    }

    private static String hostForUri(String host) {
        return host.contains(":") ? "[" + host + "]" : host;
    }
}
