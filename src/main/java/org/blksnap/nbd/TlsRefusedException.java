package org.blksnap.nbd;

import java.io.IOException;

/**
 * The TLS handshake after STARTTLS failed because of the client's credentials (an unknown PSK
 * identity, a wrong key): the connection ends, and the server logs it as a refusal, rate-limited.
 */
final class TlsRefusedException extends IOException {
    TlsRefusedException(String message, Throwable cause) {
        super(message, cause);
    }
}
