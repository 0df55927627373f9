package org.blksnap.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

/**
 * Test certificates made with {@code openssl}, in the directory layouts nbdkit, qemu and libnbd
 * read ({@code ca-cert.pem}, {@code server-cert.pem}, {@code server-key.pem}, {@code client-cert.pem},
 * {@code client-key.pem}): a CA; a server certificate for {@code localhost} and {@code 127.0.0.1}
 * with a PKCS#1 RSA key (the form certtool writes); a client certificate with subject
 * {@code CN=backup,O=Example} and a SEC1 EC key; a second client {@code CN=other,O=Example}; and a
 * client signed by another CA, which a verifying server must refuse.
 *
 * @param server    ca-cert.pem, server-cert.pem, server-key.pem
 * @param client    a libnbd {@code tls-certificates} / qemu {@code tls-creds-x509} client directory for backup
 * @param other     the same for {@code CN=other,O=Example}
 * @param rogue     a client directory whose certificate another CA signed (its ca-cert.pem is the real CA)
 * @param noCert    a client directory with only ca-cert.pem (no client certificate)
 */
public record TlsCertificates(Path server, Path client, Path other, Path rogue, Path noCert) {
    public static final String CLIENT_SUBJECT = "CN=backup,O=Example";
    public static final String OTHER_SUBJECT = "CN=other,O=Example";

    /** Makes them all under {@code dir} (about a second of openssl). */
    public static TlsCertificates create(Path dir) throws IOException {
        ExternalTool.require("openssl");
        String script = """
                set -e
                ext() { printf '%s\\n' "$@" > "$EXT"; }
                EXT=ext.cnf
                mkdir -p server client other rogue nocert
                openssl req -x509 -new -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca-cert.pem -days 3 \\
                    -subj "/CN=blksnap test CA" -addext basicConstraints=critical,CA:TRUE \\
                    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
                openssl req -x509 -new -newkey rsa:2048 -nodes -keyout rogue-ca-key.pem -out rogue-ca-cert.pem \\
                    -days 3 -subj "/CN=rogue CA" -addext basicConstraints=critical,CA:TRUE \\
                    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
                openssl genrsa -traditional -out server/server-key.pem 2048 2>/dev/null
                openssl req -new -key server/server-key.pem -subj "/O=blksnap test/CN=localhost" -out server.csr
                ext "subjectAltName=DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth" \\
                    "keyUsage=critical,digitalSignature,keyEncipherment"
                openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -set_serial 0x1001 -days 3 \\
                    -extfile "$EXT" -out server/server-cert.pem 2>/dev/null
                client() { # dir subject ca ca-key serial
                    openssl ecparam -name prime256v1 -genkey -noout -out "$1/client-key.pem"
                    openssl req -new -key "$1/client-key.pem" -subj "$2" -out "$1.csr"
                    ext "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature"
                    openssl x509 -req -in "$1.csr" -CA "$3" -CAkey "$4" -set_serial "$5" -days 3 -extfile "$EXT" \\
                        -out "$1/client-cert.pem" 2>/dev/null
                }
                client client "/O=Example/CN=backup" ca-cert.pem ca-key.pem 0x2001
                client other "/O=Example/CN=other" ca-cert.pem ca-key.pem 0x2002
                client rogue "/O=Example/CN=backup" rogue-ca-cert.pem rogue-ca-key.pem 0x3001
                for d in server client other rogue nocert; do cp ca-cert.pem "$d/"; done
                chmod 600 */*-key.pem
                """;
        ExternalTool.run(Duration.ofSeconds(60), Map.of(), dir, List.of("bash", "-c", script)).assertSuccess();
        TlsCertificates c = new TlsCertificates(dir.resolve("server"), dir.resolve("client"), dir.resolve("other"),
                dir.resolve("rogue"), dir.resolve("nocert"));
        if (!Files.exists(c.client().resolve("client-cert.pem"))) {
            throw new IOException("openssl made no client certificate in " + dir);
        }
        return c;
    }

    public Path serverCert() {
        return server.resolve("server-cert.pem");
    }

    public Path serverKey() {
        return server.resolve("server-key.pem");
    }

    public Path ca() {
        return server.resolve("ca-cert.pem");
    }
}
