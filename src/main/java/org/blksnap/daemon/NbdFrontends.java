package org.blksnap.daemon;

import java.io.IOException;
import org.blksnap.engine.module.Blksnap;

/** Starts the NBD server over the engine (filled in once the nbd branch is merged). */
final class NbdFrontends {
    private NbdFrontends() {
    }

    static NbdFrontend start(Blksnap engine, DaemonConfig config, Metrics metrics) throws IOException {
        return NbdFrontend.NONE;
    }
}
