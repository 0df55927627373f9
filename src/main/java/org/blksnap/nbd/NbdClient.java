package org.blksnap.nbd;

import java.net.InetAddress;
import javax.security.auth.x500.X500Principal;

/**
 * Who is at the other end of a connection, as far as the server knows it, for access control
 * ({@link ExportProvider#allows}).
 *
 * @param address   the TCP peer's address, or null on a Unix socket
 * @param unixUser  the Unix socket peer's user name (numeric when it has none), or null on TCP
 * @param unixGroup the Unix socket peer's group name, or null on TCP
 * @param tls       whether the connection is under TLS (STARTTLS succeeded)
 * @param subject   the subject of the client certificate when TLS verified it against the CA
 *                  ({@code --tls-verify-peer}), else null
 * @param pskIdentity the identity whose pre-shared key the client proved to hold in the TLS
 *                    handshake ({@code --tls-psk}), else null
 */
public record NbdClient(InetAddress address, String unixUser, String unixGroup, boolean tls, X500Principal subject,
                        String pskIdentity) {

    /** A peer nothing is known about (the in-memory test channels). */
    public static final NbdClient UNKNOWN = new NbdClient(null, null, null, false, null, null);

    /** A client without a PSK identity. */
    public NbdClient(InetAddress address, String unixUser, String unixGroup, boolean tls, X500Principal subject) {
        this(address, unixUser, unixGroup, tls, subject, null);
    }

    @Override
    public String toString() {
        StringBuilder b = new StringBuilder();
        if (address != null) {
            b.append(address.getHostAddress());
        }
        if (unixUser != null) {
            b.append("user ").append(unixUser);
        }
        if (tls) {
            b.append(b.isEmpty() ? "" : ", ").append("tls");
        }
        if (subject != null) {
            b.append(", subject ").append(subject.getName());
        }
        if (pskIdentity != null) {
            b.append(", psk identity ").append(pskIdentity);
        }
        return b.isEmpty() ? "unknown peer" : b.toString();
    }
}
