package org.blksnap.ctrl.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.Function;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The wire contract on its own, without a socket: every request and reply record survives the
 * shared mapper unchanged, the operation table is consistent, and what the mapper refuses is
 * refused with a message naming the operation, the field and the value.
 */
class WireContractTest {
    private static final UUID ID = UUID.fromString("123e4567-e89b-12d3-a456-426614174000");
    private static final String QID = "\"id\": \"" + ID + "\"";

    /** One sample request per operation (paired with {@link #SAMPLE_REPLIES}). */
    private static final Map<Operation, Request<?>> SAMPLE_REQUESTS = samples(
            new Requests.Version(), new Requests.Params(), new Requests.ParamsGet("chunk_minimum_shift"),
            new Requests.ParamsSet("diff_storage_minimum", 65536), new Requests.Status(), new Requests.DeviceList(),
            new Requests.DeviceAdd("d9", new AbsolutePath(Path.of("/srv/d9.img")), new Size(1L << 30)),
            new Requests.DeviceRemove("d9", true),
            new Requests.TrackerCollect(), new Requests.ReadCbtMap("disk0", 10, 5),
            new Requests.MarkDirty("disk0", List.of(new Range(0, 8), new Range(64, 8))),
            new Requests.TrackerRemove("disk0"), new Requests.SnapshotCreate(List.of("disk0", "disk1"), 60L),
            new Requests.AppendStorage(ID, new AbsolutePath(Path.of("/tmp/ds")), new Size(64L << 20),
                    List.of(new Range(0, 2048))),
            new Requests.Take(ID, List.of(new AbsolutePath(Path.of("/mnt/a")))), new Requests.SnapshotCollect(),
            new Requests.CollectImages(ID), new Requests.WaitEvent(ID, 1000), new Requests.Destroy(ID),
            new Requests.SnapshotRenew(ID),
            new Requests.AgentStart(List.of("backup", "--repo", "/srv/repo", "--device", "disk0"), true,
                    "1795000000.123456", 60L),
            new Requests.AgentWait(ID, 1000), new Requests.AgentCancel(ID));

    private static final Replies.Tracker TRACKER = new Replies.Tracker("disk0", 65536, 1L << 30, 16384, ID, 2,
            "SIZE_CHANGED", "the map was saved for 1 bytes");

    /** One sample reply per operation. */
    private static final Map<Operation, Reply> SAMPLE_REPLIES = new LinkedHashMap<>();

    static {
        Map<String, Long> params = new LinkedHashMap<>();
        params.put("tracking_block_minimum_shift", 16L);
        params.put("chunk_minimum_shift", 18L);
        Map<Operation, Reply> r = SAMPLE_REPLIES;
        r.put(Operation.VERSION, new Replies.Version("1.0.0.0", 1, 0, 0, 0));
        r.put(Operation.PARAMS, new Replies.Params(params));
        r.put(Operation.PARAMS_GET, new Replies.Param("chunk_minimum_shift", 18));
        r.put(Operation.PARAMS_SET, new Replies.Param("diff_storage_minimum", 65536));
        r.put(Operation.STATUS, new Replies.Status("1.0.0.0", params,
                List.of(new Replies.DeviceStatus("disk0", 1L << 30, TRACKER, ID, "nbd://h/disk0"),
                        new Replies.DeviceStatus("disk1", 1L << 20, null, null, null)),
                List.of(new Replies.SnapshotStatus(ID, "taken", List.of("disk0"),
                        List.of(new Replies.StatusImage("disk0", "blksnap-image0", ID, 1L << 30, null)),
                        4096, 128, 4096, 2, 1, 0, 1_795_000_000_000L, 1_795_000_001_000L, 60L, 42_000L),
                        new Replies.SnapshotStatus(UUID.randomUUID(), "created", List.of("disk1"), List.of(),
                                0, 0, 0, 0, 0, 0, 1_795_000_000_000L, 0)),
                List.of(new Replies.AgentJobStatus(ID, List.of("backup", "--repo", "/srv/r", "--device", "disk0"),
                        1_795_000_000_000L, null), new Replies.AgentJobStatus(UUID.randomUUID(), List.of("backup"),
                        1_795_000_000_000L, 3))));
        r.put(Operation.DEVICE_LIST, new Replies.Devices(List.of(
                new Replies.Device("disk0", 4096, true, ID, "nbd://h/disk0", "/srv/disk0.img", "flag", null),
                new Replies.Device("disk1", 4096, false, null, null, null, null, null),
                new Replies.Device("gone", 0, false, null, null, "/srv/gone.img", "added", "ENOENT: missing"))));
        r.put(Operation.DEVICE_ADD, new Replies.Device("d9", 1L << 30, false, null, "nbd://h/d9", "/srv/d9.img", "added",
                null));
        r.put(Operation.DEVICE_REMOVE, new Replies.Done());
        r.put(Operation.TRACKER_COLLECT, new Replies.Trackers(List.of(TRACKER)));
        r.put(Operation.TRACKER_READ_CBT_MAP, Replies.CbtMapPiece.of("disk0", 10, new byte[] {0, 1, 2, (byte) 255}));
        r.put(Operation.TRACKER_MARK_DIRTY, new Replies.Done());
        r.put(Operation.TRACKER_REMOVE, new Replies.Done());
        r.put(Operation.SNAPSHOT_CREATE, new Replies.Created(ID));
        r.put(Operation.SNAPSHOT_APPEND_STORAGE, new Replies.Done());
        r.put(Operation.SNAPSHOT_TAKE, new Replies.Done());
        r.put(Operation.SNAPSHOT_COLLECT, new Replies.SnapshotIds(List.of(ID, UUID.randomUUID())));
        r.put(Operation.SNAPSHOT_COLLECT_IMAGES, new Replies.Images(List.of(
                new Replies.Image("disk0", "blksnap-image0", 1L << 30, "nbd://h/blksnap-image0"),
                new Replies.Image("disk1", "blksnap-image1", 1L << 20, null))));
        r.put(Operation.SNAPSHOT_WAIT_EVENT, new Replies.WaitEvent(new Replies.LowFreeSpace(0, "low_free_space", 5, 2048)));
        r.put(Operation.SNAPSHOT_DESTROY, new Replies.Done());
        r.put(Operation.SNAPSHOT_RENEW, new Replies.Done());
        r.put(Operation.AGENT_START, new Replies.AgentJob(ID));
        r.put(Operation.AGENT_WAIT, new Replies.AgentOutput("disk0 20261202-101010-abcdef full 1 2\n", "blksnap: é\n", 0));
        r.put(Operation.AGENT_CANCEL, new Replies.Done());
    }

    private static Map<Operation, Request<?>> samples(Request<?>... requests) {
        return Arrays.stream(requests).collect(Collectors.toMap(Operation::of, Function.identity(), (a, b) -> a,
                LinkedHashMap::new));
    }

    static Stream<Object> records() {
        return Stream.of(SAMPLE_REQUESTS.values().stream(), SAMPLE_REPLIES.values().stream(), Stream.of(
                new Replies.WaitEvent(new Replies.Corrupted(1, "corrupted", 7, "disk0", 28, "ENOSPC")),
                new Replies.WaitEvent(new Replies.Corrupted(1, "corrupted", 7, "disk0", 99, null)),
                new Replies.WaitEvent(new Replies.GenerationReset(2, "generation_reset", 9, "disk0", ID, "STATE_CORRUPT",
                        "checkpoint: header CRC32C mismatch")),
                new Requests.AppendStorage(ID, new AbsolutePath(Path.of("/tmp/ds")), null, List.of()),
                new Requests.Take(ID, List.of()),
                ErrorReply.of("ESRCH", 3, "no snapshot " + ID))).flatMap(Function.identity());
    }

    private static String op(Operation op, String body) {
        try {
            return "accepted: " + WireJson.readRequest(op, body);
        } catch (InvalidValueException e) {
            return e.getMessage();
        }
    }

    // ---- round trips and shapes -------------------------------------------------------------------

    @Test
    void everyOperationHasASampleRequestAndReplyOfItsTypes() {
        assertThat(SAMPLE_REQUESTS.keySet()).containsExactlyInAnyOrder(Operation.values());
        assertThat(SAMPLE_REPLIES.keySet()).containsExactlyInAnyOrder(Operation.values());
        SAMPLE_REPLIES.forEach((op, reply) -> assertThat(reply).as(op.name()).isInstanceOf(op.replyType()));
    }

    @ParameterizedTest
    @MethodSource("records")
    void everyRecordRoundTripsThroughTheSharedMapperUnchanged(Object record) {
        String json = WireJson.write(record);
        Object back = WireJson.read("test", WireJson.readObject("test", json), record.getClass());
        assertThat(back).usingRecursiveComparison().isEqualTo(record);
        assertThat(WireJson.write(back)).isEqualTo(json);
    }

    @Test
    void eachRequestIsReadBackAsItsOperationsRequestType() {
        SAMPLE_REQUESTS.forEach((op, request) -> assertThat(WireJson.readRequest(op, WireJson.write(request)))
                .usingRecursiveComparison().isEqualTo(request));
    }

    @Test
    void theOperationTablePairsEachRequestWithTheReplyItsTypeDeclares() {
        for (Operation op : Operation.values()) {
            Type declared = Arrays.stream(op.requestType().getGenericInterfaces())
                    .map(ParameterizedType.class::cast).filter(p -> p.getRawType() == Request.class)
                    .findFirst().orElseThrow().getActualTypeArguments()[0];
            assertThat(declared).as(op.name()).isEqualTo(op.replyType());
            assertThat(Operation.of(SAMPLE_REQUESTS.get(op))).isEqualTo(op);
            assertThat(Operation.ofPath(op.path())).contains(op);
            assertThat(op.getAllowed()).as(op.name()).isEqualTo(op.requestType().getRecordComponents().length == 0);
        }
        assertThat(Arrays.stream(Operation.values()).map(Operation::path).distinct()).hasSize(Operation.values().length);
        assertThat(Operation.SNAPSHOT_TAKE.path()).isEqualTo("/v1/snapshot/take");
        assertThat(Operation.STATUS.getAllowed()).isTrue();
        assertThat(Operation.SNAPSHOT_TAKE.getAllowed()).isFalse();
    }

    @Test
    void repliesKeepTheirJsonShapes() {
        assertThat(WireJson.write(new Replies.Devices(List.of(new Replies.Device("d0", 4096, false, null, null,
                "/d0.img", "flag", null)))))
                .isEqualTo("{\"devices\":[{\"name\":\"d0\",\"sizeBytes\":4096,\"tracked\":false,\"snapshotId\":null,"
                        + "\"uri\":null,\"path\":\"/d0.img\",\"origin\":\"flag\"}]}");
        assertThat(WireJson.write(new Replies.Device("g", 0, false, null, null, "/g.img", "added", "ENOENT: gone")))
                .endsWith(",\"origin\":\"added\",\"unavailable\":\"ENOENT: gone\"}");
        assertThat(WireJson.write(SAMPLE_REPLIES.get(Operation.STATUS)))
                .contains("{\"name\":\"disk1\",\"sizeBytes\":1048576,\"tracker\":null,\"snapshotId\":null}")
                .contains("\"images\":[{\"device\":\"disk0\",\"image\":\"blksnap-image0\",\"snapshotId\":\"" + ID
                        + "\",\"sizeBytes\":1073741824}]")
                .contains("\"tracker\":{\"device\":\"disk0\",\"blockSizeBytes\":65536,\"capacityBytes\":1073741824,"
                        + "\"blockCount\":16384,\"generationId\":\"" + ID + "\",\"snapNumber\":2,"
                        + "\"generationReason\":\"SIZE_CHANGED\",\"generationDetail\":\"the map was saved for 1 bytes\"}")
                .contains("\"params\":{\"tracking_block_minimum_shift\":16,\"chunk_minimum_shift\":18}");
        assertThat(WireJson.write(SAMPLE_REPLIES.get(Operation.TRACKER_READ_CBT_MAP)))
                .isEqualTo("{\"device\":\"disk0\",\"offset\":10,\"length\":4,\"data\":\"AAEC/w==\"}");
        assertThat(WireJson.write(SAMPLE_REPLIES.get(Operation.SNAPSHOT_WAIT_EVENT)))
                .isEqualTo("{\"event\":{\"code\":0,\"name\":\"low_free_space\",\"timeNanos\":5,\"requestedSectors\":2048}}");
        assertThat(WireJson.write(new Replies.WaitEvent(new Replies.Corrupted(1, "corrupted", 7, "disk0", 28, "ENOSPC"))))
                .isEqualTo("{\"event\":{\"code\":1,\"name\":\"corrupted\",\"timeNanos\":7,\"device\":\"disk0\","
                        + "\"errno\":28,\"errnoName\":\"ENOSPC\"}}");
        assertThat(WireJson.write(new Replies.WaitEvent(new Replies.GenerationReset(2, "generation_reset", 9, "disk0", ID,
                "STATE_CORRUPT", "bad"))))
                .isEqualTo("{\"event\":{\"code\":2,\"name\":\"generation_reset\",\"timeNanos\":9,\"device\":\"disk0\","
                        + "\"generationId\":\"" + ID + "\",\"reason\":\"STATE_CORRUPT\",\"detail\":\"bad\"}}");
        assertThat(WireJson.write(new Replies.Done())).isEqualTo("{}");
        assertThat(WireJson.write(ErrorReply.of("ESRCH", 3, "no snapshot")))
                .isEqualTo("{\"error\":{\"name\":\"ESRCH\",\"errno\":3,\"message\":\"no snapshot\"}}");
    }

    @Test
    void requestsLeaveOutWhatIsNotGivenAndWriteSizesAndRangesInOneForm() {
        assertThat(WireJson.write(new Requests.AppendStorage(ID, new AbsolutePath(Path.of("/tmp/ds")), null, List.of())))
                .isEqualTo("{\"id\":\"" + ID + "\",\"path\":\"/tmp/ds\"}");
        assertThat(WireJson.write(SAMPLE_REQUESTS.get(Operation.SNAPSHOT_APPEND_STORAGE)))
                .isEqualTo("{\"id\":\"" + ID + "\",\"path\":\"/tmp/ds\",\"size\":67108864,"
                        + "\"ranges\":[{\"sector\":0,\"count\":2048}]}");
        assertThat(WireJson.write(new Requests.Take(ID, List.of()))).isEqualTo("{\"id\":\"" + ID + "\"}");
        assertThat(WireJson.write(new Requests.Version())).isEqualTo("{}");
    }

    // ---- strictness -------------------------------------------------------------------------------

    @Test
    void anUnknownFieldIsRefusedNamingTheKnownOnes() {
        assertThat(op(Operation.SNAPSHOT_CREATE, "{\"devices\": [\"disk0\"], \"devcies\": 1}"))
                .isEqualTo("/v1/snapshot/create: unknown field 'devcies'; known: devices, leaseSeconds");
        assertThat(op(Operation.SNAPSHOT_APPEND_STORAGE, "{" + QID + ", \"path\": \"/x\", \"foo\": 1}"))
                .isEqualTo("/v1/snapshot/append-storage: unknown field 'foo'; known: id, path, ranges, size");
        assertThat(op(Operation.VERSION, "{\"x\": 1}"))
                .isEqualTo("/v1/version: unknown field 'x' (this operation takes no arguments)");
    }

    @Test
    void aMissingOrNullRequiredFieldIsRefused() {
        assertThat(op(Operation.SNAPSHOT_CREATE, "{}")).isEqualTo("/v1/snapshot/create: field 'devices' is required");
        assertThat(op(Operation.SNAPSHOT_CREATE, "")).isEqualTo("/v1/snapshot/create: field 'devices' is required");
        assertThat(op(Operation.SNAPSHOT_CREATE, "{\"devices\": null}"))
                .isEqualTo("/v1/snapshot/create: field 'devices' is required");
        assertThat(op(Operation.SNAPSHOT_TAKE, "{\"freeze\": []}")).isEqualTo("/v1/snapshot/take: field 'id' is required");
        assertThat(op(Operation.PARAMS_SET, "{\"name\": \"x\"}")).isEqualTo("/v1/params/set: field 'value' is required");
    }

    @Test
    void nullsForNumbersAreRefusedExceptWhereTheFieldIsOptional() {
        assertThat(op(Operation.SNAPSHOT_WAIT_EVENT, "{" + QID + ", \"timeoutMs\": null}"))
                .isEqualTo("/v1/snapshot/wait-event: field 'timeoutMs' is required");
        assertThat(op(Operation.TRACKER_READ_CBT_MAP, "{\"device\": \"d\", \"length\": 5}"))
                .isEqualTo("accepted: " + new Requests.ReadCbtMap("d", 0, 5));
        assertThat(op(Operation.TRACKER_READ_CBT_MAP, "{\"device\": \"d\", \"offset\": null, \"length\": 5}"))
                .isEqualTo("accepted: " + new Requests.ReadCbtMap("d", 0, 5));
    }

    @Test
    void aValueOfTheWrongTypeIsRefusedShowingTheValue() {
        String wait = "/v1/snapshot/wait-event: field 'timeoutMs' must be a whole number, not ";
        assertThat(op(Operation.SNAPSHOT_WAIT_EVENT, "{" + QID + ", \"timeoutMs\": \"100\"}")).isEqualTo(wait + "\"100\"");
        assertThat(op(Operation.SNAPSHOT_WAIT_EVENT, "{" + QID + ", \"timeoutMs\": 1.5}")).isEqualTo(wait + "1.5");
        assertThat(op(Operation.SNAPSHOT_WAIT_EVENT, "{" + QID + ", \"timeoutMs\": true}")).isEqualTo(wait + "true");
        assertThat(op(Operation.SNAPSHOT_WAIT_EVENT, "{" + QID + ", \"timeoutMs\": 99999999999999999999}"))
                .isEqualTo(wait + "99999999999999999999");
        assertThat(op(Operation.SNAPSHOT_CREATE, "{\"devices\": \"disk0\"}"))
                .isEqualTo("/v1/snapshot/create: field 'devices' must be an array, not \"disk0\"");
        assertThat(op(Operation.SNAPSHOT_CREATE, "{\"devices\": [1]}"))
                .isEqualTo("/v1/snapshot/create: field 'devices[0]' must be a non-empty string, not 1");
        assertThat(op(Operation.SNAPSHOT_CREATE, "{\"devices\": [\"disk0\", null]}"))
                .isEqualTo("/v1/snapshot/create: field 'devices[1]' must be a non-empty string, not null");
        assertThat(op(Operation.PARAMS_GET, "{\"name\": \" \"}"))
                .isEqualTo("/v1/params/get: field 'name' (' ') must be a non-empty string");
        assertThat(op(Operation.TRACKER_REMOVE, "{\"device\": {}}"))
                .isEqualTo("/v1/tracker/remove: field 'device' must be a non-empty string, not {}");
    }

    @Test
    void idsAreUuidsInTheirCanonicalFormOnly() {
        assertThat(op(Operation.SNAPSHOT_TAKE, "{\"id\": \"x\"}")).isEqualTo(
                "/v1/snapshot/take: field 'id' ('x') is not a UUID such as 123e4567-e89b-12d3-a456-426614174000");
        assertThat(op(Operation.SNAPSHOT_TAKE, "{\"id\": \"1-2-3-4-5\"}")).contains("('1-2-3-4-5') is not a UUID");
        assertThat(op(Operation.SNAPSHOT_TAKE, "{\"id\": 5}"))
                .isEqualTo("/v1/snapshot/take: field 'id' must be a UUID such as " + Uuids.EXAMPLE + ", not 5");
        assertThat(op(Operation.SNAPSHOT_DESTROY, "{\"id\": \"" + ID.toString().toUpperCase() + "\"}"))
                .isEqualTo("accepted: " + new Requests.Destroy(ID));
        assertThat(Uuids.parse(ID.toString())).isEqualTo(ID);
        assertThatThrownBy(() -> Uuids.parse("1-2-3-4-5")).isInstanceOf(InvalidValueException.class)
                .hasMessage("'1-2-3-4-5' is not a UUID such as " + Uuids.EXAMPLE);
    }

    @Test
    void malformedDuplicateOrTrailingJsonAndNonObjectsAreRefused() {
        assertThat(op(Operation.SNAPSHOT_CREATE, "{\"devices\": [\"disk0\"")).startsWith("/v1/snapshot/create: malformed JSON: ");
        assertThat(op(Operation.SNAPSHOT_CREATE, "{\"devices\": [\"a\"], \"devices\": [\"b\"]}"))
                .startsWith("/v1/snapshot/create: malformed JSON: Duplicate Object property \"devices\"");
        assertThat(op(Operation.SNAPSHOT_CREATE, "{\"devices\": [\"a\"]} {}")).startsWith("/v1/snapshot/create: malformed JSON: ");
        assertThat(op(Operation.SNAPSHOT_CREATE, "[1,2]"))
                .isEqualTo("/v1/snapshot/create: the body must be a JSON object, not [1,2]");
    }

    @Test
    void pathsMustBeAbsolute() {
        assertThat(op(Operation.SNAPSHOT_APPEND_STORAGE, "{" + QID + ", \"path\": \"diff.img\"}")).isEqualTo(
                "/v1/snapshot/append-storage: field 'path' ('diff.img') must be an absolute path (the daemon's working "
                        + "directory is not yours)");
        assertThat(op(Operation.SNAPSHOT_TAKE, "{" + QID + ", \"freeze\": [\"/mnt/a\", \"mnt\"]}"))
                .startsWith("/v1/snapshot/take: field 'freeze[1]' ('mnt') must be an absolute path");
        assertThat(op(Operation.SNAPSHOT_APPEND_STORAGE, "{" + QID + ", \"path\": \"/a/../b/./c\"}"))
                .isEqualTo("accepted: " + new Requests.AppendStorage(ID, new AbsolutePath(Path.of("/b/c")), null, null));
    }

    // ---- ranges -----------------------------------------------------------------------------------

    @Test
    void rangesAreAcceptedAsObjectsAndAsStrings() {
        Requests.MarkDirty r = (Requests.MarkDirty) WireJson.readRequest(Operation.TRACKER_MARK_DIRTY,
                "{\"device\": \"disk0\", \"ranges\": [{\"sector\": 0, \"count\": 8}, \"16:8\", \" 32 : 4 \"]}");
        assertThat(r.ranges()).containsExactly(new Range(0, 8), new Range(16, 8), new Range(32, 4));
        assertThat(Range.parse("5:7")).isEqualTo(new Range(5, 7));
        assertThat(new Range(5, 7)).hasToString("5:7");
    }

    @Test
    void aMalformedRangeIsRefusedNamingItsPlace() {
        String p = "/v1/tracker/mark-dirty: ";
        assertThat(op(Operation.TRACKER_MARK_DIRTY, "{\"device\": \"d\", \"ranges\": [\"0:8\", \"12\"]}"))
                .isEqualTo(p + "field 'ranges[1]' ('12') must be SECTOR:COUNT with decimal numbers");
        assertThat(op(Operation.TRACKER_MARK_DIRTY, "{\"device\": \"d\", \"ranges\": [\"a:b\"]}"))
                .isEqualTo(p + "field 'ranges[0]' ('a:b') must be SECTOR:COUNT with decimal numbers");
        assertThat(op(Operation.TRACKER_MARK_DIRTY, "{\"device\": \"d\", \"ranges\": [{\"sector\": 1}]}"))
                .isEqualTo(p + "field 'ranges[0].count' is required");
        assertThat(op(Operation.TRACKER_MARK_DIRTY, "{\"device\": \"d\", \"ranges\": [{\"sector\": 1, \"count\": 2, \"x\": 3}]}"))
                .isEqualTo(p + "unknown field 'ranges[0].x'; known: count, sector");
        assertThat(op(Operation.TRACKER_MARK_DIRTY, "{\"device\": \"d\", \"ranges\": [5]}"))
                .isEqualTo(p + "field 'ranges[0]' must be {\"sector\": S, \"count\": N} or \"S:N\", not 5");
        assertThat(op(Operation.TRACKER_MARK_DIRTY, "{\"device\": \"d\", \"ranges\": [{\"sector\": \"1\", \"count\": 2}]}"))
                .isEqualTo(p + "field 'ranges[0].sector' must be a whole number, not \"1\"");
        assertThat(op(Operation.TRACKER_MARK_DIRTY, "{\"device\": \"d\", \"ranges\": []}"))
                .isEqualTo(p + "field 'ranges' must hold at least one range");
    }

    /** Whether a range's numbers make sense is the engine's to say, not the wire's. */
    @Test
    void aRangeOfWellFormedNumbersIsPassedOnWhateverTheyAre() {
        assertThat(op(Operation.TRACKER_MARK_DIRTY, "{\"device\": \"d\", \"ranges\": [\"-1:0\"]}"))
                .isEqualTo("accepted: " + new Requests.MarkDirty("d", List.of(new Range(-1, 0))));
    }

    // ---- sizes and the wire's own limits ----------------------------------------------------------

    @Test
    void sizesAreBytesOrStringsWithBinarySuffixes() {
        for (String[] c : new String[][] {{"1048576", "1048576"}, {"\"512\"", "512"}, {"\"64M\"", "67108864"},
                {"\"1G\"", "1073741824"}, {"\"64KiB\"", "65536"}, {"\"64kb\"", "65536"}, {"\"2t\"", "2199023255552"}}) {
            Requests.AppendStorage a = (Requests.AppendStorage) WireJson.readRequest(Operation.SNAPSHOT_APPEND_STORAGE,
                    "{" + QID + ", \"path\": \"/x\", \"size\": " + c[0] + "}");
            assertThat(a.size().bytes()).as(c[0]).isEqualTo(Long.parseLong(c[1]));
        }
        assertThat(Sizes.format(64L << 20)).isEqualTo("64M");
        assertThat(Sizes.format(1536L << 10)).isEqualTo("1536K");
        assertThat(Sizes.format(1000)).isEqualTo("1000");
    }

    @Test
    void aBadSizeIsRefusedSayingWhatASizeIs() {
        String p = "/v1/snapshot/append-storage: field 'size' ";
        String body = "{" + QID + ", \"path\": \"/x\", \"size\": ";
        assertThat(op(Operation.SNAPSHOT_APPEND_STORAGE, body + "\"12Q\"}"))
                .isEqualTo(p + "('12Q') must be a size such as 512, 64K, 128M, 1G");
        assertThat(op(Operation.SNAPSHOT_APPEND_STORAGE, body + "0}")).isEqualTo(p + "('0') must be a size > 0");
        assertThat(op(Operation.SNAPSHOT_APPEND_STORAGE, body + "\"-5M\"}")).isEqualTo(p + "('-5M') must be > 0");
        assertThat(op(Operation.SNAPSHOT_APPEND_STORAGE, body + "\"99999999T\"}")).isEqualTo(p + "('99999999T') is too large");
        assertThat(op(Operation.SNAPSHOT_APPEND_STORAGE, body + "1.5}"))
                .isEqualTo(p + "must be a size > 0 (bytes, or a string such as \"64M\"), not 1.5");
        assertThat(op(Operation.SNAPSHOT_APPEND_STORAGE, body + "true}"))
                .isEqualTo(p + "must be a size > 0 (bytes, or a string such as \"64M\"), not true");
        assertThatThrownBy(() -> Sizes.parseBytes("size of device d0", "abc")).isInstanceOf(InvalidValueException.class)
                .hasMessage("size of device d0 ('abc') must be a size such as 512, 64K, 128M, 1G");
    }

    @Test
    void aCbtMapPieceIsOneToSixteenMebiblocks() {
        String p = "{\"device\": \"d\", \"length\": ";
        assertThat(op(Operation.TRACKER_READ_CBT_MAP, p + "0}")).isEqualTo("/v1/tracker/read-cbt-map: field 'length' "
                + "(0 blocks) must be > 0 and <= 16777216 (the largest piece one request may read)");
        assertThat(op(Operation.TRACKER_READ_CBT_MAP, p + (Requests.ReadCbtMap.MAX_LENGTH_BLOCKS + 1) + "}"))
                .contains("(16777217 blocks) must be > 0 and <= 16777216");
        assertThat(op(Operation.TRACKER_READ_CBT_MAP, p + Requests.ReadCbtMap.MAX_LENGTH_BLOCKS + "}"))
                .startsWith("accepted");
        assertThat(op(Operation.TRACKER_READ_CBT_MAP, "{\"device\": \"d\", \"offset\": -1, \"length\": 1}"))
                .as("the engine judges offsets").startsWith("accepted");
    }

    @Test
    void aDeviceIsParsedFromNamePathAndSizeOnceForTheDaemonAndTheTool() {
        Path base = Path.of("/base");
        assertThat(Requests.DeviceAdd.parse(" d0 = /srv/d0.img:1G", base))
                .isEqualTo(new Requests.DeviceAdd("d0", new AbsolutePath(Path.of("/srv/d0.img")), new Size(1L << 30)));
        assertThat(Requests.DeviceAdd.parse("d0=sub/../d0.img", base))
                .isEqualTo(new Requests.DeviceAdd("d0", new AbsolutePath(Path.of("/base/d0.img")), null));
        assertThat(Requests.DeviceAdd.parse("d0=/srv/d0.img", base)).hasToString("d0=/srv/d0.img");
        assertThat(Requests.DeviceAdd.parse("d0=/srv/d0.img:64M", base)).hasToString("d0=/srv/d0.img:64M");
        assertThat(Requests.DeviceAdd.parse("d0=/srv/d0.img:64M:ro", base)).isEqualTo(new Requests.DeviceAdd("d0",
                new AbsolutePath(Path.of("/srv/d0.img")), new Size(64L << 20), true)).hasToString("d0=/srv/d0.img:64M:ro");
        assertThat(Requests.DeviceAdd.parse("d0=/srv/d0.img:ro", base).readOnlyRequested()).isTrue();
        assertThat(Requests.DeviceAdd.parse("d0=/srv/d0.img:ro", base).size()).isNull();
        for (String bad : List.of("d0", "=/x", "d0=", "d0=:1G", " =/x")) {
            assertThatThrownBy(() -> Requests.DeviceAdd.parse(bad, base)).as(bad).isInstanceOf(InvalidValueException.class)
                    .hasMessage("'" + bad + "' must be NAME=PATH[:SIZE][:ro]");
        }
        assertThat(Requests.DeviceAdd.parse("d0=/mnt/a:b/d0.img", base)).as("a ':' inside the path")
                .isEqualTo(new Requests.DeviceAdd("d0", new AbsolutePath(Path.of("/mnt/a:b/d0.img")), null));
        assertThat(Requests.DeviceAdd.parse("d0=/srv/vm:old.img:2G:ro", base)).as("a ':' in the file name, then a size")
                .isEqualTo(new Requests.DeviceAdd("d0", new AbsolutePath(Path.of("/srv/vm:old.img")), new Size(2L << 30), true));
        assertThat(Requests.DeviceAdd.parse("d0=/srv/vm:old.img", base).path().path()).isEqualTo(Path.of("/srv/vm:old.img"));
        assertThatThrownBy(() -> Requests.DeviceAdd.parse("d0=/srv/vm:1.img", base)).as("a digit after the last ':' is a size")
                .isInstanceOf(InvalidValueException.class).hasMessageContaining("('1.img') must be a size");
        assertThatThrownBy(() -> Requests.DeviceAdd.parse("d0=/x:12Q", base)).isInstanceOf(InvalidValueException.class)
                .hasMessage("size of device d0 ('12Q') must be a size such as 512, 64K, 128M, 1G");
    }

    @Test
    void deviceRequestsTakeAnAbsolutePathAnOptionalSizeAndAnOptionalForce() {
        assertThat(op(Operation.DEVICE_ADD, "{\"name\": \"d9\", \"path\": \"/srv/d9.img\", \"size\": \"64M\"}"))
                .isEqualTo("accepted: d9=/srv/d9.img:64M");
        assertThat(op(Operation.DEVICE_ADD, "{\"name\": \"d9\", \"path\": \"d9.img\"}"))
                .startsWith("/v1/device/add: field 'path' ('d9.img') must be an absolute path");
        assertThat(op(Operation.DEVICE_ADD, "{\"path\": \"/d9.img\"}")).isEqualTo("/v1/device/add: field 'name' is required");
        assertThat(op(Operation.DEVICE_ADD, "{\"name\": \"d9\", \"path\": \"/d9.img\", \"size\": 0}"))
                .isEqualTo("/v1/device/add: field 'size' ('0') must be a size > 0");
        assertThat(WireJson.write(new Requests.DeviceAdd("d9", new AbsolutePath(Path.of("/d9.img")), null)))
                .isEqualTo("{\"name\":\"d9\",\"path\":\"/d9.img\"}");
        assertThat(op(Operation.DEVICE_ADD, "{\"name\": \"d9\", \"path\": \"/srv/d9.img\", \"readOnly\": true}"))
                .isEqualTo("accepted: d9=/srv/d9.img:ro");
        assertThat(op(Operation.DEVICE_REMOVE, "{\"name\": \"d9\"}"))
                .isEqualTo("accepted: " + new Requests.DeviceRemove("d9", false));
        assertThat(op(Operation.DEVICE_REMOVE, "{\"name\": \"d9\", \"force\": null}"))
                .isEqualTo("accepted: " + new Requests.DeviceRemove("d9", false));
        assertThat(op(Operation.DEVICE_REMOVE, "{\"name\": \"d9\", \"force\": \"yes\"}"))
                .isEqualTo("/v1/device/remove: field 'force' must be true or false, not \"yes\"");
        assertThat(op(Operation.DEVICE_REMOVE, "{\"name\": \"d9\", \"froce\": true}"))
                .isEqualTo("/v1/device/remove: unknown field 'froce'; known: force, name");
    }

    @Test
    void nameEqualsValueIsParsedOnce() {
        assertThat(Requests.ParamsSet.parse(" diff_storage_minimum = 65536 "))
                .isEqualTo(new Requests.ParamsSet("diff_storage_minimum", 65536));
        assertThatThrownBy(() -> Requests.ParamsSet.parse("chunk_minimum_shift=x")).isInstanceOf(InvalidValueException.class)
                .hasMessage("value of chunk_minimum_shift ('x') is not a whole number");
        assertThatThrownBy(() -> Requests.ParamsSet.parse("=5")).isInstanceOf(InvalidValueException.class)
                .hasMessage("'=5' must be NAME=VALUE");
    }

    // ---- replies: strict on types, tolerant of fields a newer daemon adds --------------------------

    @Test
    void aReplyIsCheckedForTypesButAFieldTheToolDoesNotKnowIsSkipped() {
        assertThatThrownBy(() -> WireJson.readReply("answer", WireJson.readObject("answer",
                "{\"event\":{\"code\":2,\"name\":\"exploded\",\"timeNanos\":1}}"), Replies.WaitEvent.class))
                .isInstanceOf(InvalidValueException.class).hasMessageStartingWith("answer: field 'event'");
        assertThatThrownBy(() -> WireJson.readReply("answer", WireJson.readObject("answer",
                "{\"id\":\"not-a-uuid\"}"), Replies.Created.class))
                .isInstanceOf(InvalidValueException.class).hasMessageStartingWith("answer: field 'id'");
        assertThat(WireJson.readReply("answer", WireJson.readObject("answer",
                "{\"id\":\"" + ID + "\",\"addedByANewerDaemon\":1}"), Replies.Created.class).id())
                .isEqualTo(ID);
    }

    @Test
    void aRequestWithAFieldTheDaemonDoesNotKnowIsRefused() {
        assertThatThrownBy(() -> WireJson.read("answer", WireJson.readObject("answer",
                "{\"id\":\"" + ID + "\",\"extra\":1}"), Replies.Created.class))
                .isInstanceOf(InvalidValueException.class).hasMessage("answer: unknown field 'extra'; known: id");
    }
}
