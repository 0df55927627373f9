package org.blksnap.nbd;

import java.io.IOException;
import java.net.SocketAddress;
import java.nio.file.Path;

/** {@link NbdTransportTest} over TCP on 127.0.0.1 (ephemeral port). */
class NbdTcpTransportTest extends NbdTransportTest {
    @Override
    SocketAddress listen(NbdServer server, Path dir) throws IOException {
        return server.listenTcp(0);
    }
}
