package org.blksnap.nbd;

import java.io.IOException;
import java.nio.file.Path;

/**
 * The project's NBD server, in-process on a Unix socket, exporting sparse files: for tests outside
 * this package that need a real NBD peer without the daemon (the backup repository's tests).
 */
public final class FileExportServer implements AutoCloseable {
    private final TestExports exports = new TestExports();
    private final NbdServer server;
    private final Path socket;

    /** Serves each {@code names[i]} as {@code dir/NAME.img} of {@code sizeBytes} (created sparse). */
    public FileExportServer(Path dir, long sizeBytes, String... names) throws IOException {
        for (String n : names) {
            exports.add(dir, n, sizeBytes, false);
        }
        server = new NbdServer(exports);
        socket = server.listenUnix(dir.resolve("nbd.sock"));
    }

    /** The {@code nbd+unix} URI of an export. */
    public String uri(String name) {
        return "nbd+unix:///" + name + "?socket=" + socket;
    }

    @Override
    public void close() throws IOException {
        server.close();
        exports.close();
    }
}
