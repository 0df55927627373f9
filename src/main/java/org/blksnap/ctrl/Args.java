package org.blksnap.ctrl;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.SectorRange;
import tools.jackson.databind.JsonNode;

/**
 * The arguments of one request: a JSON object whose fields are read with strict checks. Every
 * field must be known to the operation ({@link #finish()} rejects the rest), so a misspelt option
 * is an EINVAL instead of a silently ignored value; all of this happens before the engine is
 * called, so a bad request changes nothing.
 */
final class Args {
    private final String op;
    private final JsonNode body;
    private final Set<String> read = new HashSet<>();

    Args(String op, JsonNode body) {
        this.op = op;
        this.body = body;
        if (body != null && !body.isObject()) {
            throw invalid("the request body must be a JSON object");
        }
    }

    private BlksnapException invalid(String message) {
        return new BlksnapException(Errno.EINVAL, op + ": " + message);
    }

    private JsonNode field(String name, boolean required) {
        read.add(name);
        JsonNode n = body == null ? null : body.get(name);
        if (n == null || n.isNull()) {
            if (required) {
                throw invalid("field '" + name + "' is required");
            }
            return null;
        }
        return n;
    }

    String string(String name) {
        JsonNode n = field(name, true);
        if (!n.isString() || n.stringValue().isBlank()) {
            throw invalid("field '" + name + "' must be a non-empty string, not " + n);
        }
        return n.stringValue();
    }

    long longValue(String name, long defaultValue) {
        JsonNode n = field(name, false);
        if (n == null) {
            return defaultValue;
        }
        if (!n.isIntegralNumber() || !n.canConvertToLong()) {
            throw invalid("field '" + name + "' must be a whole number, not " + n);
        }
        return n.longValue();
    }

    long requiredLong(String name) {
        field(name, true);
        return longValue(name, 0);
    }

    /** A size in bytes: a number, or a string with a K/M/G/T suffix; 0 if absent. */
    long sizeBytes(String name) {
        JsonNode n = field(name, false);
        if (n == null) {
            return 0;
        }
        if (n.isString()) {
            return Sizes.parseBytes(op + ": field '" + name + "'", n.stringValue());
        }
        if (!n.isIntegralNumber() || !n.canConvertToLong() || n.longValue() <= 0) {
            throw invalid("field '" + name + "' must be a size > 0 (bytes, or a string such as \"64M\"), not " + n);
        }
        return n.longValue();
    }

    UUID uuid(String name) {
        String text = string(name);
        try {
            UUID id = UUID.fromString(text);
            if (!id.toString().equalsIgnoreCase(text)) {
                throw new IllegalArgumentException(text);
            }
            return id;
        } catch (IllegalArgumentException e) {
            throw invalid("field '" + name + "' ('" + text + "') is not a UUID such as 123e4567-e89b-12d3-a456-426614174000");
        }
    }

    Path absolutePath(String name) {
        String text = string(name);
        Path p = Path.of(text);
        if (!p.isAbsolute()) {
            throw invalid("field '" + name + "' ('" + text + "') must be an absolute path (the daemon's working directory is not yours)");
        }
        return p.normalize();
    }

    List<String> strings(String name, boolean required) {
        JsonNode n = field(name, required);
        List<String> out = new ArrayList<>();
        if (n == null) {
            return out;
        }
        if (!n.isArray()) {
            throw invalid("field '" + name + "' must be an array of strings, not " + n);
        }
        for (JsonNode e : n) {
            if (!e.isString() || e.stringValue().isBlank()) {
                throw invalid("field '" + name + "' must hold non-empty strings, not " + e);
            }
            out.add(e.stringValue());
        }
        return out;
    }

    /** Sector ranges: {@code [{"sector": S, "count": N}, ...]} or {@code ["S:N", ...]}. */
    List<SectorRange> ranges(String name, boolean required) {
        JsonNode n = field(name, required);
        List<SectorRange> out = new ArrayList<>();
        if (n == null) {
            return out;
        }
        if (!n.isArray()) {
            throw invalid("field '" + name + "' must be an array of {\"sector\": S, \"count\": N}, not " + n);
        }
        for (JsonNode e : n) {
            try {
                if (e.isString()) {
                    out.add(SectorRange.parse(e.stringValue()));
                } else if (e.isObject() && e.path("sector").isIntegralNumber() && e.path("count").isIntegralNumber()
                        && e.size() == 2) {
                    out.add(new SectorRange(e.get("sector").longValue(), e.get("count").longValue()));
                } else {
                    throw invalid("each of '" + name + "' must be {\"sector\": S, \"count\": N}, not " + e);
                }
            } catch (BlksnapException x) {
                throw x.getMessage().startsWith(op) ? x : invalid(x.getMessage());
            }
        }
        if (required && out.isEmpty()) {
            throw invalid("field '" + name + "' must hold at least one range");
        }
        return out;
    }

    /** Rejects fields the operation does not know. */
    Args finish() {
        if (body != null) {
            for (String name : body.propertyNames()) {
                if (!read.contains(name)) {
                    throw invalid("unknown field '" + name + "'" + (read.isEmpty() ? " (this operation takes no arguments)"
                            : "; known: " + String.join(", ", new java.util.TreeSet<>(read))));
                }
            }
        }
        return this;
    }
}
