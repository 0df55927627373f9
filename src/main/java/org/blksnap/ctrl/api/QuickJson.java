package org.blksnap.ctrl.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import java.lang.reflect.Constructor;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.RecordComponent;
import java.lang.reflect.Type;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * The wire contract's records in JSON without Jackson, for the tool's plain-text calls: it writes a
 * request and reads an answer exactly as {@link WireJson} does, by the same records and the same
 * annotations, where Jackson's start-up (its mapper's set-up, {@code BigDecimal}'s, the
 * introspection of each type) would be about a third of a call. It is not a second contract: what
 * it is not sure of (a type, a value or a form it does not know, anything {@link WireJson} might
 * refuse) it leaves to {@link WireJson} by returning null, so every error and its message stay
 * WireJson's. QuickJsonTest checks that both agree on every operation's request and answer and
 * that QuickJson accepts nothing WireJson refuses.
 *
 * <p>Understood: records of strings (never blank), {@code int}, {@code long}, {@code boolean} and
 * their boxes, UUIDs (canonical form), {@code byte[]} (base64), {@link Size}, {@link AbsolutePath},
 * {@link Range}, lists, maps of strings to longs, nested records and the sealed {@link Replies.Event}
 * (by its {@code name}); {@code @JsonInclude} NON_NULL and NON_EMPTY on a record or a component.
 * Numbers are whole numbers only. Stateless and thread-safe.
 */
public final class QuickJson {
    /** Deepest nesting read; deeper bodies are left to WireJson. */
    private static final int MAX_DEPTH = 32;

    private QuickJson() {
    }

    /** Why a body or a value is left to WireJson; never leaves this class. */
    private static final class Unsure extends Exception {
        private static final Unsure INSTANCE = new Unsure();

        private Unsure() {
            super(null, null, false, false);
        }
    }

    // ---- writing ---------------------------------------------------------------------------------

    /** The request as one line of JSON, byte for byte what {@link WireJson#write} gives; null if left to it. */
    public static String write(Request<?> request) {
        StringBuilder b = new StringBuilder(128);
        try {
            writeRecord(b, request);
        } catch (Unsure e) {
            return null;
        }
        return b.toString();
    }

    private static void writeRecord(StringBuilder b, Object record) throws Unsure {
        Class<?> type = record.getClass();
        if (!type.isRecord()) {
            throw Unsure.INSTANCE;
        }
        JsonInclude.Include recordInclusion = inclusion(type.getAnnotation(JsonInclude.class));
        b.append('{');
        boolean first = true;
        for (RecordComponent c : type.getRecordComponents()) {
            Object value;
            try {
                value = c.getAccessor().invoke(record);
            } catch (ReflectiveOperationException e) {
                throw Unsure.INSTANCE;
            }
            // the contract's annotations apply to fields, parameters and accessors, not to record components
            JsonInclude.Include inclusion = inclusion(c.getAccessor().getAnnotation(JsonInclude.class));
            if (inclusion == null) {
                inclusion = recordInclusion;
            }
            if (value == null && inclusion != null || inclusion == JsonInclude.Include.NON_EMPTY && isEmpty(value)) {
                continue;
            }
            if (!first) {
                b.append(',');
            }
            first = false;
            writeString(b, c.getName());
            b.append(':');
            writeValue(b, value);
        }
        b.append('}');
    }

    /** NON_NULL or NON_EMPTY, null for none; another inclusion is left to WireJson. */
    private static JsonInclude.Include inclusion(JsonInclude a) throws Unsure {
        if (a == null) {
            return null;
        }
        JsonInclude.Include i = a.value();
        if (i == JsonInclude.Include.NON_NULL || i == JsonInclude.Include.NON_EMPTY) {
            return i;
        }
        throw Unsure.INSTANCE;
    }

    private static boolean isEmpty(Object value) {
        return value == null || value instanceof Collection<?> c && c.isEmpty() || value instanceof Map<?, ?> m && m.isEmpty()
                || value instanceof String s && s.isEmpty();
    }

    private static void writeValue(StringBuilder b, Object value) throws Unsure {
        switch (value) {
            case null -> b.append("null");
            case String s -> writeString(b, s);
            case Long n -> b.append(n.longValue());
            case Integer n -> b.append(n.intValue());
            case Boolean f -> b.append(f.booleanValue());
            case UUID id -> writeString(b, id.toString());
            case Size s -> b.append(s.bytes());
            case AbsolutePath p -> writeString(b, p.toString());
            case List<?> list -> {
                b.append('[');
                for (int i = 0; i < list.size(); i++) {
                    if (i > 0) {
                        b.append(',');
                    }
                    writeValue(b, list.get(i));
                }
                b.append(']');
            }
            case Record r -> writeRecord(b, r);
            default -> throw Unsure.INSTANCE;
        }
    }

    /** A string as Jackson writes it; control characters (which it escapes its own way) are left to it. */
    private static void writeString(StringBuilder b, String s) throws Unsure {
        b.append('"');
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            if (ch < 0x20) {
                throw Unsure.INSTANCE;
            }
            if (ch == '"' || ch == '\\') {
                b.append('\\');
            }
            b.append(ch);
        }
        b.append('"');
    }

    // ---- reading ---------------------------------------------------------------------------------

    /**
     * Reads an answer of an operation whose reply is {@code replyType}: an {@link ErrorReply} when the
     * body is an error body (it has {@code error}), else the reply; fields the record does not know
     * are skipped, as {@link WireJson#readReply} does. Null if left to WireJson.
     */
    public static Object readAnswer(String body, Class<? extends Reply> replyType) {
        try {
            Object tree = new Parser(body).document();
            if (!(tree instanceof Map<?, ?> object)) {
                return null;
            }
            return bind(object, object.containsKey("error") ? ErrorReply.class : replyType, 0);
        } catch (Unsure e) {
            return null;
        }
    }

    /** Whole numbers: a JSON number with a fraction or an exponent is read as this, and refused. */
    private record NotWhole() {
    }

    private static Object bind(Object json, Type type, int depth) throws Unsure {
        if (depth > MAX_DEPTH || json == null) {
            throw Unsure.INSTANCE;
        }
        if (type instanceof ParameterizedType p) {
            Type[] args = p.getActualTypeArguments();
            if (p.getRawType() == List.class && json instanceof List<?> list) {
                List<Object> out = new ArrayList<>(list.size());
                for (Object element : list) {
                    out.add(bind(element, args[0], depth + 1)); // a null element is refused above
                }
                return out;
            }
            if (p.getRawType() == Map.class && args[0] == String.class && json instanceof Map<?, ?> map) {
                Map<String, Object> out = new LinkedHashMap<>();
                for (Map.Entry<?, ?> e : map.entrySet()) {
                    out.put((String) e.getKey(), bind(e.getValue(), args[1], depth + 1));
                }
                return out;
            }
            throw Unsure.INSTANCE;
        }
        if (type == String.class && json instanceof String s && !s.isBlank()) {
            return s;
        }
        if ((type == long.class || type == Long.class) && json instanceof Long n) {
            return n;
        }
        if ((type == int.class || type == Integer.class) && json instanceof Long n && n == n.intValue()) {
            return n.intValue();
        }
        if ((type == boolean.class || type == Boolean.class) && json instanceof Boolean f) {
            return f;
        }
        if (type == UUID.class && json instanceof String s) {
            try {
                return Uuids.parse(s);
            } catch (InvalidValueException e) {
                throw Unsure.INSTANCE;
            }
        }
        if (type == byte[].class && json instanceof String s && s.length() % 4 == 0) {
            try {
                return Base64.getDecoder().decode(s);
            } catch (IllegalArgumentException e) {
                throw Unsure.INSTANCE;
            }
        }
        if (type == Replies.Event.class && json instanceof Map<?, ?> map && map.get("name") instanceof String name) {
            for (Class<?> sub : Replies.Event.class.getPermittedSubclasses()) {
                if (name.equals(eventName(sub))) {
                    return bind(map, sub, depth);
                }
            }
            throw Unsure.INSTANCE;
        }
        if (type instanceof Class<?> c && c.isRecord() && c.getPackage() == QuickJson.class.getPackage()
                && json instanceof Map<?, ?> map && c != Size.class && c != AbsolutePath.class && c != Range.class) {
            return bindRecord(map, c, depth);
        }
        throw Unsure.INSTANCE;
    }

    private static String eventName(Class<?> eventType) throws Unsure {
        try {
            return (String) eventType.getField("NAME").get(null);
        } catch (ReflectiveOperationException e) {
            throw Unsure.INSTANCE;
        }
    }

    /** A record from its object: every component present and not null, except optional references. */
    private static Object bindRecord(Map<?, ?> object, Class<?> type, int depth) throws Unsure {
        RecordComponent[] components = type.getRecordComponents();
        Class<?>[] types = new Class<?>[components.length];
        Object[] values = new Object[components.length];
        for (int i = 0; i < components.length; i++) {
            RecordComponent c = components[i];
            types[i] = c.getType();
            Object json = object.get(c.getName());
            if (json == null) {
                if (c.getType().isPrimitive() || c.getAccessor().isAnnotationPresent(Required.class)
                        || Collection.class.isAssignableFrom(c.getType()) || Map.class.isAssignableFrom(c.getType())) {
                    throw Unsure.INSTANCE; // WireJson decides: an error, or a default it applies
                }
                continue;
            }
            values[i] = bind(json, c.getGenericType(), depth + 1);
        }
        try {
            Constructor<?> canonical = type.getDeclaredConstructor(types);
            return canonical.newInstance(values);
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw Unsure.INSTANCE; // the record's own rule refused it: WireJson says how
        }
    }

    /**
     * A strict JSON reader into maps (in order), lists, strings, longs, booleans and nulls: one value
     * and only whitespace after it, no duplicate names, whole numbers within a long.
     */
    private static final class Parser {
        private final String s;
        private int pos;

        Parser(String s) {
            this.s = s;
        }

        Object document() throws Unsure {
            Object v = value(0);
            skipWhitespace();
            if (pos != s.length()) {
                throw Unsure.INSTANCE;
            }
            return v;
        }

        private Object value(int depth) throws Unsure {
            if (depth > MAX_DEPTH) {
                throw Unsure.INSTANCE;
            }
            skipWhitespace();
            if (pos >= s.length()) {
                throw Unsure.INSTANCE;
            }
            char c = s.charAt(pos);
            switch (c) {
                case '{' -> {
                    pos++;
                    Map<String, Object> object = new LinkedHashMap<>();
                    skipWhitespace();
                    if (peek() == '}') {
                        pos++;
                        return object;
                    }
                    while (true) {
                        skipWhitespace();
                        if (peek() != '"') {
                            throw Unsure.INSTANCE;
                        }
                        String name = string();
                        skipWhitespace();
                        expect(':');
                        if (object.containsKey(name)) {
                            throw Unsure.INSTANCE;
                        }
                        object.put(name, value(depth + 1));
                        skipWhitespace();
                        if (peek() == ',') {
                            pos++;
                        } else {
                            expect('}');
                            return object;
                        }
                    }
                }
                case '[' -> {
                    pos++;
                    List<Object> list = new ArrayList<>();
                    skipWhitespace();
                    if (peek() == ']') {
                        pos++;
                        return list;
                    }
                    while (true) {
                        list.add(value(depth + 1));
                        skipWhitespace();
                        if (peek() == ',') {
                            pos++;
                        } else {
                            expect(']');
                            return list;
                        }
                    }
                }
                case '"' -> {
                    return string();
                }
                case 't' -> {
                    literal("true");
                    return Boolean.TRUE;
                }
                case 'f' -> {
                    literal("false");
                    return Boolean.FALSE;
                }
                case 'n' -> {
                    literal("null");
                    return null;
                }
                default -> {
                    return number();
                }
            }
        }

        private char peek() {
            return pos < s.length() ? s.charAt(pos) : '\0';
        }

        private void expect(char c) throws Unsure {
            if (peek() != c) {
                throw Unsure.INSTANCE;
            }
            pos++;
        }

        private void literal(String word) throws Unsure {
            if (!s.startsWith(word, pos)) {
                throw Unsure.INSTANCE;
            }
            pos += word.length();
        }

        private void skipWhitespace() {
            while (pos < s.length()) {
                char c = s.charAt(pos);
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                    return;
                }
                pos++;
            }
        }

        private Object number() throws Unsure {
            int start = pos;
            if (peek() == '-') {
                pos++;
            }
            int digits = pos;
            while (peek() >= '0' && peek() <= '9') {
                pos++;
            }
            if (pos == digits || s.charAt(digits) == '0' && pos - digits > 1) {
                throw Unsure.INSTANCE; // no digits, or a leading zero
            }
            char next = peek();
            if (next == '.' || next == 'e' || next == 'E') {
                while (pos < s.length() && "+-.eE0123456789".indexOf(s.charAt(pos)) >= 0) {
                    pos++;
                }
                return new NotWhole();
            }
            try {
                return Long.parseLong(s, start, pos, 10);
            } catch (NumberFormatException e) {
                throw Unsure.INSTANCE;
            }
        }

        private String string() throws Unsure {
            pos++; // the opening quote
            StringBuilder b = null;
            int start = pos;
            while (pos < s.length()) {
                char c = s.charAt(pos);
                if (c == '"') {
                    String done = b == null ? s.substring(start, pos) : b.append(s, start, pos).toString();
                    pos++;
                    return done;
                }
                if (c < 0x20) {
                    throw Unsure.INSTANCE;
                }
                if (c == '\\') {
                    if (b == null) {
                        b = new StringBuilder();
                    }
                    b.append(s, start, pos);
                    b.append(escape());
                    start = pos;
                    continue;
                }
                pos++;
            }
            throw Unsure.INSTANCE;
        }

        /** One escape after its backslash; leaves pos after it. */
        private char escape() throws Unsure {
            if (pos + 1 >= s.length()) {
                throw Unsure.INSTANCE;
            }
            char e = s.charAt(pos + 1);
            pos += 2;
            return switch (e) {
                case '"' -> '"';
                case '\\' -> '\\';
                case '/' -> '/';
                case 'b' -> '\b';
                case 'f' -> '\f';
                case 'n' -> '\n';
                case 'r' -> '\r';
                case 't' -> '\t';
                case 'u' -> {
                    if (pos + 4 > s.length()) {
                        throw Unsure.INSTANCE;
                    }
                    int u = 0;
                    for (int i = 0; i < 4; i++) {
                        int digit = Character.digit(s.charAt(pos + i), 16);
                        if (digit < 0 || s.charAt(pos + i) > 'f') {
                            throw Unsure.INSTANCE;
                        }
                        u = u * 16 + digit;
                    }
                    pos += 4;
                    yield (char) u;
                }
                default -> throw Unsure.INSTANCE;
            };
        }
    }
}
