package org.blksnap.daemon;

import java.io.IOException;

/**
 * The NBD side of the daemon as the rest of it sees it: URIs of exports, and closing an export
 * whose image went away.
 */
interface NbdFrontend extends AutoCloseable {
    /** No NBD server (both --listen and --socket are none). */
    NbdFrontend NONE = new NbdFrontend() {
        @Override
        public String uri(String exportName) {
            return null;
        }

        @Override
        public void closeExport(String exportName) {
        }

        @Override
        public void close() {
        }
    };

    /** The URI a client connects to for that export (TCP if served, else the Unix socket), or null. */
    String uri(String exportName);

    /**
     * Disconnects every client of that export (its image or device was removed), once their
     * requests in flight are answered.
     */
    void closeExport(String exportName);

    /** Stops serving and disconnects every client. */
    @Override
    void close() throws IOException;
}
