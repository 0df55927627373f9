package org.blksnap.nbd;

import java.io.IOException;

/** The peer broke the protocol so that the connection cannot continue; the server disconnects it. */
final class NbdProtocolException extends IOException {
    NbdProtocolException(String message) {
        super(message);
    }
}
