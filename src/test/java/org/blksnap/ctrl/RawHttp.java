package org.blksnap.ctrl;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/** Sends one raw HTTP request over a Unix socket, for control API tests that need bad requests. */
public final class RawHttp {
    private static final JsonMapper JSON = JsonMapper.builder().build();

    /** A response: status code and JSON body. */
    public record Reply(int status, String body) {
        public JsonNode json() {
            return JSON.readTree(body);
        }

        public String errorName() {
            return json().path("error").path("name").asString();
        }
    }

    private RawHttp() {
    }

    public static Reply send(Path socket, String method, String path, String body) throws IOException {
        byte[] payload = body == null ? new byte[0] : body.getBytes(StandardCharsets.UTF_8);
        String head = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + (body == null ? "" : "Content-Type: application/json\r\nContent-Length: " + payload.length + "\r\n")
                + "\r\n";
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(socket));
            ch.write(ByteBuffer.wrap(head.getBytes(StandardCharsets.US_ASCII)));
            ByteBuffer p = ByteBuffer.wrap(payload);
            while (p.hasRemaining()) {
                ch.write(p);
            }
            byte[] all = java.nio.channels.Channels.newInputStream(ch).readAllBytes();
            String text = new String(all, StandardCharsets.UTF_8);
            int status = Integer.parseInt(text.substring(9, 12));
            int bodyStart = text.indexOf("\r\n\r\n") + 4;
            return new Reply(status, text.substring(bodyStart));
        }
    }
}
