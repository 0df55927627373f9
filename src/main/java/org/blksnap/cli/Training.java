package org.blksnap.cli;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.blksnap.ctrl.api.ErrorReply;
import org.blksnap.ctrl.api.Operation;
import org.blksnap.ctrl.api.Replies;
import org.blksnap.ctrl.api.WireJson;

/**
 * The training run of the tool's class-data archive: {@code bin/blksnap} runs it once (when the
 * archive is missing or older than the jars) with {@code -XX:ArchiveClassesAtExit}, so that the
 * archive holds what real calls load, whatever the first real call was: the command model and its
 * help, the wire contract's JSON writing and reading of every reply type, the text forms, the
 * error path. It runs typical commands in-process against a stand-in daemon that answers each
 * operation with a fixed reply on a Unix socket of its own, in a temporary directory it removes.
 * Prints nothing; exits 0, or 1 if a command did not behave (the launcher then keeps no archive).
 */
public final class Training {
    private static final UUID ID = UUID.fromString("0c7e5a2e-3f41-4d0b-9a38-7e4a8b2f5c11");

    private Training() {
    }

    public static void main(String[] args) throws Exception {
        System.exit(run() == 0 ? 0 : 1);
    }

    /**
     * Runs the command training in a temporary directory it removes.
     *
     * @return how many calls did not end as expected
     */
    public static int run() throws IOException {
        Path dir = Files.createTempDirectory("blksnap-training");
        Path socket = dir.resolve("control.sock");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            Thread daemon = Thread.ofVirtual().start(() -> serve(server));
            int failures = 0;
            PrintStream sink = new PrintStream(OutputStream.nullOutputStream(), true, StandardCharsets.UTF_8);
            for (List<String> call : calls()) {
                String[] argv = call.toArray(String[]::new);
                int expected = call.contains("destroy") ? 3 : 0; // the stand-in answers destroy with ESRCH
                if (Main.run(argv, sink, sink, Map.of("BLKSNAP_CONTROL", socket.toString())) != expected) {
                    failures++;
                }
            }
            daemon.interrupt();
            return failures;
        } finally {
            Files.deleteIfExists(socket);
            Files.deleteIfExists(dir);
        }
    }

    /** What scripts and people call most, in text and in JSON, and the help. */
    private static List<List<String>> calls() {
        String id = ID.toString();
        List<List<String>> plain = List.of(List.of("version"), List.of("device", "list"), List.of("status"),
                List.of("params"), List.of("tracker", "collect"), List.of("snapshot", "collect"),
                List.of("snapshot", "create", "--device", "disk0"), List.of("snapshot", "images", "--id", id),
                List.of("snapshot", "take", "--id", id), List.of("snapshot", "wait-event", "--id", id, "--timeout", "0"),
                List.of("snapshot", "destroy", "--id", id));
        List<List<String>> all = new java.util.ArrayList<>(plain);
        for (List<String> c : plain) {
            List<String> json = new java.util.ArrayList<>(List.of("--json"));
            json.addAll(c);
            all.add(json);
        }
        all.add(List.of("--help"));
        all.add(List.of("--version"));
        all.add(List.of("snapshot", "--help"));
        all.add(List.of("snapshot", "create", "--help"));
        return all;
    }

    /** Answers every request with the fixed reply of its operation, one request per connection. */
    private static void serve(ServerSocketChannel server) {
        Map<Operation, String> replies = replies();
        while (!Thread.currentThread().isInterrupted()) {
            try (SocketChannel c = server.accept()) {
                String request = readRequest(c);
                String path = request.substring(request.indexOf(' ') + 1, request.indexOf(' ', request.indexOf(' ') + 1));
                String body = Operation.ofPath(path).map(replies::get)
                        .orElse(WireJson.write(ErrorReply.of("EINVAL", 22, "no such operation " + path)));
                byte[] b = body.getBytes(StandardCharsets.UTF_8);
                String head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + b.length
                        + "\r\nConnection: close\r\n\r\n";
                c.write(ByteBuffer.wrap(head.getBytes(StandardCharsets.US_ASCII)));
                c.write(ByteBuffer.wrap(b));
            } catch (IOException e) {
                return; // closed at the end of the training
            }
        }
    }

    /** The request's head and body (the client sends its whole request, then waits). */
    private static String readRequest(SocketChannel c) throws IOException {
        ByteArrayOutputStream in = new ByteArrayOutputStream();
        ByteBuffer buf = ByteBuffer.allocate(8192);
        while (true) {
            String s = in.toString(StandardCharsets.UTF_8);
            int end = s.indexOf("\r\n\r\n");
            if (end >= 0) {
                int length = 0;
                for (String line : s.substring(0, end).split("\r\n")) {
                    if (line.toLowerCase(java.util.Locale.ROOT).startsWith("content-length:")) {
                        length = Integer.parseInt(line.substring(15).trim());
                    }
                }
                if (in.size() >= end + 4 + length) {
                    return s;
                }
            }
            buf.clear();
            if (c.read(buf) < 0) {
                return s;
            }
            in.write(buf.array(), 0, buf.position());
        }
    }

    /** A plausible reply to each operation the training calls. */
    private static Map<Operation, String> replies() {
        UUID gen = UUID.fromString("6f1c2a3b-0000-4000-8000-000000000001");
        Replies.Tracker t = new Replies.Tracker("disk0", 65536, 1L << 30, 16384, gen, 4, "NEW_TRACKER", null);
        String uri = "nbd://127.0.0.1:10809/";
        Map<Operation, Object> r = new EnumMap<>(Operation.class);
        r.put(Operation.VERSION, new Replies.Version("1.0.0.0", 1, 0, 0, 0));
        r.put(Operation.PARAMS, new Replies.Params(Map.of("tracking_block_minimum_shift", 16L)));
        r.put(Operation.STATUS, new Replies.Status("1.0.0.0", Map.of("chunk_minimum_shift", 18L),
                List.of(new Replies.DeviceStatus("disk0", 1L << 30, t, ID, uri + "disk0"),
                        new Replies.DeviceStatus("vm1", 4L << 30, null, null, null)),
                List.of(new Replies.SnapshotStatus(ID, "taken", List.of("disk0"),
                        List.of(new Replies.StatusImage("disk0", "blksnap-image0", ID, 1L << 30, uri + "blksnap-image0")),
                        524288, 131072, 524288, 256, 0, 0, 1_795_000_000_000L, 1_795_000_001_000L))));
        r.put(Operation.DEVICE_LIST, new Replies.Devices(List.of(
                new Replies.Device("disk0", 1L << 30, true, ID, uri + "disk0", "/srv/disk0.img", "flag", null),
                new Replies.Device("vm1", 4L << 30, false, null, null, "/srv/vm1.img", "added", null))));
        r.put(Operation.TRACKER_COLLECT, new Replies.Trackers(List.of(t)));
        r.put(Operation.SNAPSHOT_COLLECT, new Replies.SnapshotIds(List.of(ID)));
        r.put(Operation.SNAPSHOT_CREATE, new Replies.Created(ID));
        r.put(Operation.SNAPSHOT_COLLECT_IMAGES, new Replies.Images(List.of(
                new Replies.Image("disk0", "blksnap-image0", 1L << 30, uri + "blksnap-image0"))));
        r.put(Operation.SNAPSHOT_TAKE, new Replies.Done());
        r.put(Operation.SNAPSHOT_WAIT_EVENT, new Replies.WaitEvent(new Replies.LowFreeSpace(0, Replies.LowFreeSpace.NAME,
                1, 2097152)));
        r.put(Operation.SNAPSHOT_DESTROY, ErrorReply.of("ESRCH", 3, "no snapshot " + ID));
        Map<Operation, String> json = new EnumMap<>(Operation.class);
        r.forEach((op, reply) -> json.put(op, WireJson.write(reply)));
        return json;
    }
}
