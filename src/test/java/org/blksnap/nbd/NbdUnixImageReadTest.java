package org.blksnap.nbd;

import java.io.IOException;
import java.net.SocketAddress;
import java.net.UnixDomainSocketAddress;
import java.nio.file.Path;

/** {@link NbdImageReadTest} over a Unix domain socket. */
class NbdUnixImageReadTest extends NbdImageReadTest {
    @Override
    SocketAddress listen(NbdServer server, Path dir) throws IOException {
        return UnixDomainSocketAddress.of(server.listenUnix(dir.resolve("nbd.sock")));
    }
}
