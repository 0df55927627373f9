package org.blksnap.cli;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Locale;
import org.blksnap.ctrl.api.ErrorReply;
import org.blksnap.ctrl.api.InvalidValueException;
import org.blksnap.ctrl.api.Operation;
import org.blksnap.ctrl.api.QuickJson;
import org.blksnap.ctrl.api.Reply;
import org.blksnap.ctrl.api.Request;
import org.blksnap.ctrl.api.Requests;
import org.blksnap.ctrl.api.WireJson;
import tools.jackson.databind.JsonNode;

/**
 * A minimal HTTP/1.1 client for the control API: one request per connection on the Unix socket
 * (JDK {@link SocketChannel} with {@link UnixDomainSocketAddress}, so the tool starts without any
 * HTTP library). Not thread-safe; cheap to create.
 */
final class ControlClient {
    /**
     * Largest response accepted, in bytes: the largest CBT piece ({@link Requests.ReadCbtMap#MAX_LENGTH_BLOCKS})
     * in base64, plus headers.
     */
    static final int MAX_RESPONSE_BYTES = 32 << 20;

    private final Path socket;

    ControlClient(Path socket) {
        this.socket = socket;
    }

    Path socket() {
        return socket;
    }

    /** The daemon could not be reached at all (no socket, refused, not a socket). */
    static final class UnreachableException extends Exception {
        UnreachableException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** The daemon answered with an error body. */
    static final class RemoteException extends Exception {
        private final ErrorReply.Detail error;

        RemoteException(ErrorReply.Detail error) {
            super(error.message());
            this.error = error;
        }

        /** The error body, as the daemon sent it. */
        ErrorReply body() {
            return new ErrorReply(error);
        }

        String errnoName() {
            return error.name();
        }

        int errno() {
            return error.errno();
        }
    }

    /** The conversation broke off or the answer was not the control API's. */
    static final class ProtocolException extends Exception {
        ProtocolException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /**
     * Calls the operation of a request.
     *
     * @return the answer, read strictly into the operation's reply record
     * @throws RemoteException the daemon answered with an error body
     */
    <R extends Reply> R call(Request<R> request) throws UnreachableException, RemoteException, ProtocolException {
        Operation op = Operation.of(request);
        String json = QuickJson.write(request); // Jackson only when QuickJson leaves it the request
        byte[] payload = (json != null ? json : WireJson.write(request)).getBytes(StandardCharsets.UTF_8);
        String head = "POST " + op.path() + " HTTP/1.1\r\n"
                + "Host: blksnapd\r\n"
                + "Content-Type: application/json\r\n"
                + "Content-Length: " + payload.length + "\r\n"
                + "Connection: close\r\n\r\n";
        SocketChannel ch;
        try {
            ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        } catch (IOException e) {
            throw new UnreachableException("cannot open a Unix socket: " + e.getMessage(), e);
        }
        try (ch) {
            try {
                ch.connect(UnixDomainSocketAddress.of(socket));
            } catch (IOException e) {
                throw new UnreachableException("cannot reach blksnapd at " + socket + ": " + reason(e)
                        + " (is the daemon running? start it with bin/blksnapd, or point --control or "
                        + "BLKSNAP_CONTROL at its control.sock)", e);
            }
            writeFully(ch, ByteBuffer.wrap(head.getBytes(StandardCharsets.US_ASCII)));
            writeFully(ch, ByteBuffer.wrap(payload));
            byte[] raw = readAll(ch);
            return parse(op, raw);
        } catch (IOException e) {
            throw new ProtocolException("talking to blksnapd at " + socket + " failed: " + reason(e), e);
        }
    }

    private static String reason(IOException e) {
        String m = e.getMessage();
        if (e instanceof java.net.SocketException && m != null && m.toLowerCase(Locale.ROOT).contains("no such file")) {
            return "no such socket";
        }
        return m == null ? e.getClass().getSimpleName() : m;
    }

    private static void writeFully(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    private static byte[] readAll(SocketChannel ch) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteBuffer buf = ByteBuffer.allocate(64 * 1024);
        while (ch.read(buf) >= 0) {
            buf.flip();
            out.write(buf.array(), 0, buf.limit());
            buf.clear();
            if (out.size() > MAX_RESPONSE_BYTES) {
                throw new IOException("response exceeds " + MAX_RESPONSE_BYTES + " bytes");
            }
        }
        return out.toByteArray();
    }

    private <R extends Reply> R parse(Operation op, byte[] raw) throws ProtocolException, RemoteException {
        int headerEnd = indexOf(raw, "\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
        if (headerEnd < 0) {
            throw new ProtocolException("blksnapd at " + socket + " closed the connection without a complete answer to "
                    + op.path() + " (" + raw.length + " bytes)", null);
        }
        String headers = new String(raw, 0, headerEnd, StandardCharsets.ISO_8859_1);
        String[] lines = headers.split("\r\n");
        String[] statusLine = lines[0].split(" ", 3);
        if (statusLine.length < 2 || !statusLine[0].startsWith("HTTP/")) {
            throw new ProtocolException("not an HTTP answer from " + socket + ": " + lines[0], null);
        }
        boolean chunked = false;
        long contentLength = -1;
        for (int i = 1; i < lines.length; i++) {
            String l = lines[i].toLowerCase(Locale.ROOT);
            if (l.startsWith("transfer-encoding:") && l.contains("chunked")) {
                chunked = true;
            } else if (l.startsWith("content-length:")) {
                contentLength = Long.parseLong(l.substring("content-length:".length()).trim());
            }
        }
        int start = headerEnd + 4;
        byte[] body;
        if (chunked) {
            body = dechunk(raw, start);
        } else {
            int end = contentLength < 0 ? raw.length : (int) Math.min(raw.length, start + contentLength);
            body = java.util.Arrays.copyOfRange(raw, start, end);
        }
        String text = new String(body, StandardCharsets.UTF_8);
        Object answer = QuickJson.readAnswer(text, op.replyType()); // Jackson only for what QuickJson leaves it
        if (answer instanceof ErrorReply e) {
            throw new RemoteException(e.error());
        }
        if (answer != null) {
            @SuppressWarnings("unchecked") // Operation pairs each request type with its R (WireContractTest checks)
            R reply = (R) answer;
            return reply;
        }
        String where = "the answer to " + op.path() + " (HTTP " + statusLine[1] + ")";
        try {
            JsonNode node = WireJson.readObject(where, text);
            if (node.has("error")) {
                throw new RemoteException(WireJson.readReply(where, node, ErrorReply.class).error());
            }
            @SuppressWarnings("unchecked") // Operation pairs each request type with its R (WireContractTest checks)
            R reply = (R) WireJson.readReply(where, node, op.replyType());
            return reply;
        } catch (InvalidValueException e) {
            throw new ProtocolException("blksnapd at " + socket + " did not answer as the control API: "
                    + e.getMessage(), e);
        }
    }

    private static byte[] dechunk(byte[] raw, int pos) throws ProtocolException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        while (pos < raw.length) {
            int lineEnd = indexOf(raw, "\r\n".getBytes(StandardCharsets.US_ASCII), pos);
            if (lineEnd < 0) {
                break;
            }
            String sizeText = new String(raw, pos, lineEnd - pos, StandardCharsets.US_ASCII).split(";")[0].trim();
            int size;
            try {
                size = Integer.parseInt(sizeText, 16);
            } catch (NumberFormatException e) {
                throw new ProtocolException("bad chunk size '" + sizeText + "'", e);
            }
            if (size == 0) {
                break;
            }
            int dataStart = lineEnd + 2;
            if (size < 0 || dataStart + size > raw.length) {
                throw new ProtocolException("truncated chunk", null);
            }
            out.write(raw, dataStart, size);
            pos = dataStart + size + 2;
        }
        return out.toByteArray();
    }

    private static int indexOf(byte[] hay, byte[] needle) {
        return indexOf(hay, needle, 0);
    }

    private static int indexOf(byte[] hay, byte[] needle, int from) {
        outer:
        for (int i = from; i <= hay.length - needle.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (hay[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }
}
