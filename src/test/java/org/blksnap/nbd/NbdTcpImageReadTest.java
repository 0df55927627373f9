package org.blksnap.nbd;

import java.io.IOException;
import java.net.SocketAddress;
import java.nio.file.Path;

/** {@link NbdImageReadTest} over TCP on 127.0.0.1 (ephemeral port). */
class NbdTcpImageReadTest extends NbdImageReadTest {
    @Override
    SocketAddress listen(NbdServer server, Path dir) throws IOException {
        return server.listenTcp(0);
    }
}
