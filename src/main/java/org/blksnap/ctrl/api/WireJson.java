package org.blksnap.ctrl.api;

import com.fasterxml.jackson.annotation.JsonSetter;
import com.fasterxml.jackson.annotation.Nulls;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.UUID;
import tools.jackson.core.JacksonException;
import tools.jackson.core.JsonParser;
import tools.jackson.core.JsonToken;
import tools.jackson.core.StreamReadFeature;
import tools.jackson.core.exc.InputCoercionException;
import tools.jackson.databind.DeserializationContext;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.MapperFeature;
import tools.jackson.databind.cfg.CoercionAction;
import tools.jackson.databind.cfg.CoercionInputShape;
import tools.jackson.databind.deser.jdk.StringDeserializer;
import tools.jackson.databind.deser.std.StdScalarDeserializer;
import tools.jackson.databind.exc.MismatchedInputException;
import tools.jackson.databind.exc.UnrecognizedPropertyException;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.module.SimpleModule;
import tools.jackson.databind.type.LogicalType;

/**
 * The one JSON configuration of the control API, used by the daemon and the tool alike, and the
 * translation of what it refuses into messages that name the field. Strict:
 *
 * <ul>
 *   <li>an unknown field, a duplicate field, or anything after the object is an error;</li>
 *   <li>a value of the wrong type is an error: no string for a number, no number for a string, no
 *       fraction for a whole number, no {@code true} for either;</li>
 *   <li>a missing or null number is an error (unless the record says it is optional), as is a
 *       missing or null {@link Required} field and a null inside a list;</li>
 *   <li>strings are never empty or blank;</li>
 *   <li>ids are UUIDs in their canonical form ({@link Uuids}).</li>
 * </ul>
 *
 * Thread-safe and stateless.
 */
public final class WireJson {
    private static final JsonMapper MAPPER = JsonMapper.builder()
            .addModule(new SimpleModule("blksnap-wire")
                    .addDeserializer(String.class, new NonBlankString())
                    .addDeserializer(UUID.class, new StrictUuid()))
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT)
            .disable(MapperFeature.ALLOW_COERCION_OF_SCALARS)
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .withCoercionConfig(LogicalType.Textual, c -> c.setCoercion(CoercionInputShape.Integer, CoercionAction.Fail)
                    .setCoercion(CoercionInputShape.Float, CoercionAction.Fail)
                    .setCoercion(CoercionInputShape.Boolean, CoercionAction.Fail))
            .changeDefaultNullHandling(n -> JsonSetter.Value.construct(Nulls.DEFAULT, Nulls.FAIL))
            .build();
    /**
     * Replies are read as strictly, except that fields the tool does not know are skipped: a newer
     * daemon may add a field to a reply without breaking an older tool (requests stay strict, so a
     * misspelt argument is never silently ignored).
     */
    private static final JsonMapper REPLY_MAPPER = MAPPER.rebuild()
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .build();

    private WireJson() {
    }

    /** Writes a request, reply or error body as one line of JSON. */
    public static String write(Object body) {
        return MAPPER.writeValueAsString(body);
    }

    /**
     * Reads a request body of {@code op}; an empty or blank body is an object without fields.
     *
     * @throws InvalidValueException naming the operation's path and the field
     */
    public static Request<?> readRequest(Operation op, String body) {
        return read(op.path(), readObject(op.path(), body.isBlank() ? "{}" : body), op.requestType());
    }

    /**
     * Parses a body that must be one JSON object.
     *
     * @param where what is read, for the message (the operation's path)
     * @throws InvalidValueException {@code where: malformed JSON: ...} or {@code where: the body must be a JSON object}
     */
    public static JsonNode readObject(String where, String body) {
        JsonNode tree;
        try {
            tree = MAPPER.readTree(body);
        } catch (JacksonException e) {
            throw new InvalidValueException(where + ": malformed JSON: " + e.getOriginalMessage());
        }
        if (tree == null || !tree.isObject()) {
            throw new InvalidValueException(where + ": the body must be a JSON object, not " + tree);
        }
        return tree;
    }

    /**
     * Binds a parsed object to a record.
     *
     * @param where what is read, for the message (the operation's path)
     * @throws InvalidValueException {@code where: field 'F' ...}: unknown, required, of the wrong type, or
     *                               breaking the value's own rule
     */
    public static <T> T read(String where, JsonNode tree, Class<T> type) {
        return read(MAPPER, where, tree, type);
    }

    /**
     * Binds a parsed reply (or error body) to a record, skipping fields the record does not know.
     *
     * @throws InvalidValueException as {@link #read}, but never for an unknown field
     */
    public static <T> T readReply(String where, JsonNode tree, Class<T> type) {
        return read(REPLY_MAPPER, where, tree, type);
    }

    private static <T> T read(JsonMapper mapper, String where, JsonNode tree, Class<T> type) {
        try {
            return mapper.treeToValue(tree, type);
        } catch (JacksonException e) {
            throw new InvalidValueException(where + ": " + problem(e, tree));
        }
    }

    private static String problem(JacksonException e, JsonNode root) {
        List<JacksonException.Reference> path = e.getPath();
        String field = "field '" + fieldName(path) + "'";
        if (e instanceof UnrecognizedPropertyException u) {
            Collection<Object> known = u.getKnownPropertyIds();
            return "unknown " + field + (known.isEmpty() ? " (this operation takes no arguments)"
                    : "; known: " + String.join(", ", new TreeSet<>(known.stream().map(String::valueOf).toList())));
        }
        if (e.getCause() instanceof InvalidValueException v) {
            return v.about(field);
        }
        JsonNode node = nodeAt(root, path);
        boolean inList = !path.isEmpty() && path.getLast().getPropertyName() == null;
        if (node == null || node.isNull() && !inList) {
            return field + " is required";
        }
        return field + " must be " + expected(targetType(e)) + ", not " + node;
    }

    /** {@code ranges[1].count}, from Jackson's path to the failing value. */
    private static String fieldName(List<JacksonException.Reference> path) {
        StringBuilder b = new StringBuilder();
        for (JacksonException.Reference r : path) {
            if (r.getPropertyName() != null) {
                b.append(b.isEmpty() ? "" : ".").append(r.getPropertyName());
            } else if (r.getIndex() >= 0) {
                b.append('[').append(r.getIndex()).append(']');
            }
        }
        return b.toString();
    }

    /** The value at the path, or null if it is not there. */
    private static JsonNode nodeAt(JsonNode root, List<JacksonException.Reference> path) {
        JsonNode n = root;
        for (JacksonException.Reference r : path) {
            n = r.getPropertyName() != null ? n.get(r.getPropertyName()) : n.get(r.getIndex());
            if (n == null) {
                return null;
            }
        }
        return n;
    }

    private static Class<?> targetType(JacksonException e) {
        if (e instanceof MismatchedInputException m) {
            return m.getTargetType();
        }
        if (e instanceof InputCoercionException c) {
            return c.getTargetType();
        }
        return null;
    }

    /** What a value of that type looks like on the wire, for messages. */
    private static String expected(Class<?> type) {
        if (type == null) {
            return "of another type";
        }
        if (type == long.class || type == Long.class || type == int.class || type == Integer.class) {
            return "a whole number";
        }
        if (type == String.class) {
            return "a non-empty string";
        }
        if (type == boolean.class || type == Boolean.class) {
            return "true or false";
        }
        if (type == UUID.class) {
            return "a UUID such as " + Uuids.EXAMPLE;
        }
        if (type == Size.class) {
            return Size.EXPECTED;
        }
        if (type == Range.class) {
            return Range.EXPECTED;
        }
        if (type == AbsolutePath.class) {
            return "an absolute path";
        }
        if (type == byte[].class) {
            return "base64 text";
        }
        if (Collection.class.isAssignableFrom(type)) {
            return "an array";
        }
        if (Map.class.isAssignableFrom(type) || type.isRecord()) {
            return "an object";
        }
        return "a " + type.getSimpleName();
    }

    /** Strings on the wire are never blank: every one is a name, a path, a message or a state. */
    private static final class NonBlankString extends StringDeserializer {
        @Override
        public String deserialize(JsonParser p, DeserializationContext ctxt) {
            String s = super.deserialize(p, ctxt);
            if (s != null && s.isBlank()) {
                throw new InvalidValueException(s, "must be a non-empty string");
            }
            return s;
        }
    }

    /** UUIDs only in their canonical 36-character form ({@link Uuids#parse}). */
    private static final class StrictUuid extends StdScalarDeserializer<UUID> {
        StrictUuid() {
            super(UUID.class);
        }

        @Override
        public UUID deserialize(JsonParser p, DeserializationContext ctxt) {
            if (!p.hasToken(JsonToken.VALUE_STRING)) {
                return (UUID) ctxt.handleUnexpectedToken(UUID.class, p);
            }
            return Uuids.parse(p.getString());
        }
    }
}
