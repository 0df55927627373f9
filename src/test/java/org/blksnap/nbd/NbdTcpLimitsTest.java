package org.blksnap.nbd;

import java.io.IOException;
import java.net.SocketAddress;
import java.nio.file.Path;

/** {@link NbdLimitsTest} over TCP on 127.0.0.1 (ephemeral port). */
class NbdTcpLimitsTest extends NbdLimitsTest {
    @Override
    SocketAddress listen(NbdServer server, Path dir) throws IOException {
        return server.listenTcp(0);
    }
}
