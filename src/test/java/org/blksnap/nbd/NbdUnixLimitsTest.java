package org.blksnap.nbd;

import java.io.IOException;
import java.net.SocketAddress;
import java.net.UnixDomainSocketAddress;
import java.nio.file.Path;

/** {@link NbdLimitsTest} over a Unix domain socket. */
class NbdUnixLimitsTest extends NbdLimitsTest {
    @Override
    SocketAddress listen(NbdServer server, Path dir) throws IOException {
        return UnixDomainSocketAddress.of(server.listenUnix(dir.resolve("nbd.sock")));
    }
}
