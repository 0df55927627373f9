package org.blksnap.backup;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HexFormat;
import tools.jackson.core.JacksonException;
import tools.jackson.core.StreamReadFeature;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ObjectNode;

/**
 * Layout of a point's manifest, {@code points/<id>.point}, format {@link #FORMAT}: two lines of
 * UTF-8 text. Format 2 adds {@code host}; a format 1 manifest (no host) reads as a point of host "". The point
 * exists once this file does; it is written last, after every pack it needs is sealed, by
 * write-fsync-rename.
 *
 * <pre>
 *   {"format":2,"id":"20261202-081500-a1b2c3","device":"disk0","time":"2026-12-02T08:15:00Z",
 *    "kind":"incremental","reason":"...","generation":"&lt;uuid&gt;","snapNumber":2,"sizeBytes":67108864,
 *    "chunkSizeBytes":65536,"fanout":32,"root":"&lt;120 hex digits: a ref&gt;","bytesRead":1048576,
 *    "newBytes":1050000,"seconds":0.41,"host":"web1"}\n   (line 1, one line; fields as Point)
 *   sha256 &lt;64 hex digits: SHA-256 of line 1's bytes, without its newline&gt;\n   (line 2)
 * </pre>
 *
 * A manifest whose checksum, JSON or fields do not check is {@link RepositoryException.Code#DAMAGED};
 * one of another {@code format} is {@link RepositoryException.Code#VERSION}.
 */
final class ManifestDescriptor {
    private ManifestDescriptor() {
    }

    /** The format written: 2 adds {@code host}. Format 1 manifests (no host) are read as well. */
    static final int FORMAT = 2;
    static final int FORMAT_1 = 1;
    static final String SUFFIX = ".point";
    static final String CHECKSUM_PREFIX = "sha256 ";
    /** Largest manifest read, in bytes: a manifest is a few hundred bytes. */
    static final int MAX_BYTES = 64 << 10;

    private static final JsonMapper MAPPER = JsonMapper.builder()
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build();

    static byte[] encode(Point p) {
        ObjectNode node = MAPPER.createObjectNode();
        node.put("format", FORMAT);
        node.setAll((ObjectNode) MAPPER.valueToTree(p));
        String body = MAPPER.writeValueAsString(node);
        return (body + "\n" + CHECKSUM_PREFIX + sha(body) + "\n").getBytes(StandardCharsets.UTF_8);
    }

    /** The point of a manifest's bytes; {@code file} names it in errors. */
    static Point decode(Path file, byte[] bytes) throws RepositoryException {
        return decode(file.toString(), file.getFileName().toString(), bytes);
    }

    /** The point of a manifest's bytes; {@code file} names it in errors, {@code name} is its file or object name. */
    static Point decode(String file, String name, byte[] bytes) throws RepositoryException {
        if (bytes.length > MAX_BYTES) {
            throw damaged(file, "is " + bytes.length + " bytes, more than a manifest's " + MAX_BYTES);
        }
        String text = new String(bytes, StandardCharsets.UTF_8);
        String[] lines = text.split("\n", -1);
        if (lines.length != 3 || !lines[2].isEmpty() || !lines[1].startsWith(CHECKSUM_PREFIX)) {
            throw damaged(file, "is not two lines (JSON, then 'sha256 HEX'): torn or damaged");
        }
        if (!lines[1].substring(CHECKSUM_PREFIX.length()).equals(sha(lines[0]))) {
            throw damaged(file, "does not match its checksum");
        }
        try {
            JsonNode node = MAPPER.readTree(lines[0]);
            int format = node.path("format").asInt(-1);
            if (format != FORMAT && format != FORMAT_1) {
                throw new RepositoryException(RepositoryException.Code.VERSION, "manifest " + file + " has format "
                        + node.path("format") + "; this blksnap reads formats " + FORMAT_1 + " and " + FORMAT);
            }
            if (format == FORMAT_1 && node.has("host")) {
                throw damaged(file, "of format 1 has a host field");
            }
            ObjectNode fields = ((ObjectNode) node).deepCopy();
            fields.remove("format");
            Point p = MAPPER.treeToValue(fields, Point.class);
            if (p.id() == null || p.device() == null || p.root() == null || p.generation() == null || p.kind() == null
                    || !name.equals(p.id() + SUFFIX)) {
                throw damaged(file, "lacks a field or names another point (" + p.id() + ")");
            }
            p.geometry();
            rootRef(p);
            return p;
        } catch (JacksonException | IllegalArgumentException | ClassCastException e) {
            throw damaged(file, "is not a valid manifest: " + e.getMessage());
        }
    }

    /** The root ref a manifest names. */
    static Ref rootRef(Point p) {
        byte[] raw = HexFormat.of().parseHex(p.root());
        if (raw.length != NodeDescriptor.REF_BYTES) {
            throw new IllegalArgumentException("root is " + raw.length + " bytes, not " + NodeDescriptor.REF_BYTES);
        }
        return Ref.read(ByteBuffer.wrap(raw));
    }

    static String rootHex(Ref root) {
        ByteBuffer buf = ByteBuffer.allocate(NodeDescriptor.REF_BYTES);
        root.write(buf);
        return HexFormat.of().formatHex(buf.array());
    }

    private static String sha(String body) {
        return Sha256.of(body.getBytes(StandardCharsets.UTF_8)).hex();
    }

    private static RepositoryException damaged(String file, String what) {
        return new RepositoryException(RepositoryException.Code.DAMAGED, "manifest " + file + " " + what);
    }
}
