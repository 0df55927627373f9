package org.blksnap.ctrl.api;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/**
 * QuickJson, the tool's Jackson-free path, writes requests byte for byte as WireJson does, reads
 * every answer into the same record, and accepts nothing WireJson refuses: what it leaves (null)
 * goes to WireJson, whose errors the tool then reports.
 */
class QuickJsonTest {
    private static final UUID ID = UUID.fromString("123e4567-e89b-12d3-a456-426614174000");

    /** What WireJson makes of an answer (as ControlClient reads it), or null if it refuses it. */
    private static Object jackson(String body, Class<? extends Reply> type) {
        try {
            var node = WireJson.readObject("answer", body);
            Class<?> as = node.has("error") ? ErrorReply.class : type;
            return WireJson.readReply("answer", node, as);
        } catch (InvalidValueException e) {
            return null;
        }
    }

    private static Class<? extends Reply> replyTypeOf(Object record) {
        for (Operation op : Operation.values()) {
            if (op.replyType() == record.getClass()) {
                return op.replyType();
            }
        }
        return Replies.Done.class; // an error body: any operation's
    }

    @Test
    void everyRequestIsWrittenByteForByteAsWireJsonWritesIt() {
        List<Object> requests = new ArrayList<>(WireContractTest.records().filter(r -> r instanceof Request<?>).toList());
        requests.add(new Requests.DeviceAdd("d \"quoted\" \\ ü", new AbsolutePath(Path.of("/srv/a b.img")), null, true));
        requests.add(new Requests.ParamsSet("x", -1));
        requests.add(new Requests.DeviceRemove("d", false));
        assertThat(requests).hasSizeGreaterThan(20);
        for (Object r : requests) {
            assertThat(QuickJson.write((Request<?>) r)).as(r.toString()).isEqualTo(WireJson.write(r));
        }
        assertThat(QuickJson.write(new Requests.ParamsGet("tab\there"))).as("control characters are left to Jackson").isNull();
    }

    @Test
    void everyAnswerIsReadIntoTheRecordWireJsonReadsItInto() {
        List<Object> answers = WireContractTest.records().filter(r -> !(r instanceof Request<?>)).toList();
        assertThat(answers).hasSizeGreaterThan(20);
        for (Object r : answers) {
            String body = WireJson.write(r);
            Object quick = QuickJson.readAnswer(body, replyTypeOf(r));
            assertThat(quick).as(body).isNotNull().usingRecursiveComparison().isEqualTo(r)
                    .isEqualTo(jackson(body, replyTypeOf(r)));
        }
        assertThat(QuickJson.readAnswer("{\"id\":\"" + ID + "\",\"addedByANewerDaemon\":[1.5,{\"a\":null}]}",
                Replies.Created.class)).as("a field the tool does not know is skipped").isEqualTo(new Replies.Created(ID));
        assertThat(QuickJson.readAnswer(" {\"version\" : \"1.0\\u0030\\n\", \"major\":1,\"minor\":-0,\"revision\":0,"
                + "\"build\":2147483647}\n", Replies.Version.class)).isEqualTo(new Replies.Version("1.00\n", 1, 0, 0,
                Integer.MAX_VALUE));
    }

    private static final List<String> ODD_VALUES = List.of("1.5", "1e3", "-1", "0", "01", "-", "9223372036854775807",
            "9223372036854775808", "2147483648", "\"\"", "\" \"", "\"x\"", "\"5\"", "\"123E4567-E89B-12D3-A456-426614174000\"",
            "\"1-2-3-4-5\"", "\"AAE=\"", "\"AAE\"", "\"A A=\"", "null", "true", "false", "[]", "[null]", "[1]", "{}",
            "{\"a\":1}", "\"\\u00zz\"", "\"\\x\"", "\"a\\\"b\"", "\"\\ud800\"", "tru", "nul", "\"unterminated");

    /**
     * Every scalar value of every sample answer replaced in turn by each odd value (and the body cut,
     * doubled or given a duplicate field): whatever QuickJson accepts, WireJson accepts as the same.
     */
    @Test
    void nothingWireJsonRefusesIsAcceptedAndWhatBothAcceptIsTheSame() {
        int quick = 0;
        int refused = 0;
        for (Object r : WireContractTest.records().filter(x -> !(x instanceof Request<?>)).toList()) {
            String body = WireJson.write(r);
            Class<? extends Reply> type = replyTypeOf(r);
            List<String> variants = new ArrayList<>(List.of(body.substring(0, body.length() - 1), body + body, body + " x",
                    "[" + body + "]", "", "  ", body.replaceFirst("\\{\"", "{\"dup\":1,\"dup\":2,\""),
                    body.replaceFirst("\\{\"([a-zA-Z]+)\":", "{\"$1\":0,\"$1\":")));
            for (int i = body.indexOf(':'); i >= 0; i = body.indexOf(':', i + 1)) {
                int end = i + 1;
                char first = body.charAt(end);
                if (first == '{' || first == '[') {
                    continue;
                }
                boolean inString = first == '"';
                end++;
                while (end < body.length() && (inString ? body.charAt(end) != '"' || body.charAt(end - 1) == '\\'
                        : body.charAt(end) != ',' && body.charAt(end) != '}' && body.charAt(end) != ']')) {
                    end++;
                }
                if (inString) {
                    end++;
                }
                for (String odd : ODD_VALUES) {
                    variants.add(body.substring(0, i + 1) + odd + body.substring(end));
                }
                variants.add(body.substring(0, i + 1) + body.substring(end)); // no value
            }
            for (String v : variants) {
                Object q = QuickJson.readAnswer(v, type);
                Object j = jackson(v, type);
                if (q != null) {
                    quick++;
                    assertThat(j).as("WireJson refuses what QuickJson accepted: %s", v).isNotNull();
                    assertThat(q).as(v).usingRecursiveComparison().isEqualTo(j);
                } else if (j == null) {
                    refused++;
                }
            }
        }
        assertThat(quick).as("variants QuickJson read").isGreaterThan(100);
        assertThat(refused).as("variants both refused").isGreaterThan(500);
    }

    @Test
    void anErrorBodyIsReadAsTheErrorWhateverTheOperation() {
        String body = WireJson.write(ErrorReply.of("EBUSY", 16, "device disk0 is in snapshot " + ID));
        assertThat(QuickJson.readAnswer(body, Replies.Devices.class)).isEqualTo(ErrorReply.of("EBUSY", 16,
                "device disk0 is in snapshot " + ID));
        assertThat(QuickJson.readAnswer("{\"error\":{\"name\":\"EBUSY\",\"errno\":16}}", Replies.Done.class))
                .as("a required field missing: WireJson says so").isNull();
        assertThat(QuickJson.readAnswer("{\"params\":{\"a\":1,\"b\":2}}", Replies.Params.class))
                .isEqualTo(new Replies.Params(Map.of("a", 1L, "b", 2L)));
    }
}
