package org.blksnap.ctrl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.blksnap.engine.Errno;
import org.blksnap.engine.SectorRange;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ControlServerTest {
    @TempDir
    Path dir;
    FakeBlksnap engine;
    ControlServer server;
    Path socket;
    final List<List<String>> commands = new ArrayList<>();

    @BeforeEach
    void start() throws Exception {
        engine = new FakeBlksnap();
        socket = dir.resolve("control.sock");
        server = ControlServer.start(engine, new FakeDevices(), socket, name -> "nbd://127.0.0.1:10809/" + name, cmd -> {
            commands.add(cmd);
            return new FreezeHooks.CommandRunner.Result(0, "");
        }, ev -> {
        });
    }

    @AfterEach
    void stop() throws Exception {
        server.close();
    }

    private RawHttp.Reply post(String path, String body) throws Exception {
        return RawHttp.send(socket, "POST", path, body);
    }

    /**
     * Every request's peer credentials go to the access policy before anything is done; a refusal is
     * EPERM (403) with the policy's message, and paths of an admitted caller go through it too.
     */
    @Test
    void theAccessPolicySeesThePeerCredentialsOfEveryRequestAndItsPaths() throws Exception {
        List<String> seen = new ArrayList<>();
        List<Path> paths = new ArrayList<>();
        AccessPolicy policy = new AccessPolicy() {
            @Override
            public Caller admit(java.nio.file.attribute.UserPrincipal user, java.nio.file.attribute.GroupPrincipal group) {
                seen.add(user.getName());
                if (seen.size() == 1) {
                    throw new org.blksnap.engine.BlksnapException(org.blksnap.engine.Errno.EPERM, "not you");
                }
                return new Caller(user, group, false);
            }

            @Override
            public java.nio.file.attribute.GroupPrincipal socketGroup() {
                return null;
            }

            @Override
            public <T> T withPath(Caller caller, Path path, String what, java.util.function.Function<Path, T> use,
                                  java.util.function.Consumer<T> undo) {
                paths.add(path);
                throw new org.blksnap.engine.BlksnapException(org.blksnap.engine.Errno.EPERM, what + " refused");
            }
        };
        Path other = dir.resolve("policed.sock");
        try (ControlServer policed = ControlServer.start(engine, new FakeDevices(), other, name -> "nbd://x/" + name,
                cmd -> new FreezeHooks.CommandRunner.Result(0, ""), ev -> {
                }, policy)) {
            RawHttp.Reply refused = RawHttp.send(other, "GET", "/v1/version", null);
            assertThat(refused.status()).isEqualTo(403);
            assertThat(refused.body()).contains("\"EPERM\"").contains("not you");
            String me = System.getProperty("user.name");
            assertThat(seen).containsExactly(me);

            String id = engine.snapshotCreate(List.of("disk0")).toString();
            RawHttp.Reply storage = RawHttp.send(other, "POST", "/v1/snapshot/append-storage",
                    "{\"id\":\"" + id + "\",\"path\":\"/x/s.img\",\"size\":\"1M\"}");
            assertThat(storage.status()).isEqualTo(403);
            assertThat(storage.body()).contains("append-storage path refused");
            assertThat(paths).containsExactly(Path.of("/x/s.img"));
        }
    }

    @Test
    void socketIsCreatedWithMode0600() throws Exception {
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(socket))).isEqualTo("rw-------");
    }

    /**
     * In a world-writable directory the socket must never be reachable under a looser mode: it is
     * bound in a private 0700 directory, made 0600 and renamed into place; nothing is left beside it.
     */
    @Test
    void inALooseDirectoryTheSocketIsStill0600AndNothingIsLeftBehind() throws Exception {
        Path loose = Files.createDirectory(dir.resolve("loose"));
        Files.setPosixFilePermissions(loose, PosixFilePermissions.fromString("rwxrwxrwx"));
        Path other = loose.resolve("ctl.sock");
        try (ControlServer second = ControlServer.start(engine, new FakeDevices(), other, name -> "nbd://x/" + name,
                cmd -> new FreezeHooks.CommandRunner.Result(0, ""), ev -> {
                })) {
            assertThat(second.socket()).isEqualTo(other);
            assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(other))).isEqualTo("rw-------");
            try (var listing = Files.list(loose)) {
                assertThat(listing.map(p -> p.getFileName().toString())).containsExactly("ctl.sock");
            }
            assertThat(RawHttp.send(other, "GET", "/v1/version", null).status()).isEqualTo(200);
        }
        assertThat(other).doesNotExist();
    }

    @Test
    void versionAnswersGetAndPost() throws Exception {
        RawHttp.Reply get = RawHttp.send(socket, "GET", "/v1/version", null);
        assertThat(get.status()).isEqualTo(200);
        assertThat(get.json().path("version").asString()).isEqualTo("1.0.0.0");
        assertThat(post("/v1/version", "{}").json().path("major").asInt()).isEqualTo(1);
    }

    @Test
    @Tag("system")
    void curlOverTheUnixSocketWorks() throws Exception {
        org.blksnap.testing.ExternalTool.require("curl");
        Process p = new ProcessBuilder("curl", "-sS", "--unix-socket", socket.toString(), "http://x/v1/version")
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).isZero();
        assertThat(out).contains("\"version\":\"1.0.0.0\"");
    }

    @Test
    void malformedJsonIsEinvalAndReachesNoEngineCall() throws Exception {
        RawHttp.Reply r = post("/v1/snapshot/create", "{\"devices\": [\"disk0\"");
        assertThat(r.status()).isEqualTo(400);
        assertThat(r.errorName()).isEqualTo("EINVAL");
        assertThat(r.json().path("error").path("errno").asInt()).isEqualTo(22);
        assertThat(r.json().path("error").path("message").asString()).contains("malformed JSON");
        assertThat(engine.calls).isEmpty();
    }

    @Test
    void aBodyThatIsNotAnObjectIsEinval() throws Exception {
        RawHttp.Reply r = post("/v1/snapshot/create", "[1,2]");
        assertThat(r.errorName()).isEqualTo("EINVAL");
        assertThat(r.json().path("error").path("message").asString()).contains("JSON object");
    }

    @Test
    void unknownOperationIsEnoentAndListsTheKnownOnes() throws Exception {
        RawHttp.Reply r = post("/v1/snapshot/explode", "{}");
        assertThat(r.status()).isEqualTo(404);
        assertThat(r.errorName()).isEqualTo("ENOENT");
        assertThat(r.json().path("error").path("message").asString()).contains("unknown operation")
                .contains("/v1/snapshot/take");
    }

    @Test
    void anIdThatIsNotAUuidIsEinval() throws Exception {
        RawHttp.Reply r = post("/v1/snapshot/take", "{\"id\": \"1234\"}");
        assertThat(r.status()).isEqualTo(400);
        assertThat(r.errorName()).isEqualTo("EINVAL");
        assertThat(r.json().path("error").path("message").asString())
                .isEqualTo("/v1/snapshot/take: field 'id' ('1234') is not a UUID such as 123e4567-e89b-12d3-a456-426614174000");
        assertThat(engine.calls).isEmpty();
    }

    @Test
    void anUnknownFieldIsEinvalNamingIt() throws Exception {
        RawHttp.Reply r = post("/v1/snapshot/create", "{\"devices\": [\"disk0\"], \"devcies\": 1}");
        assertThat(r.errorName()).isEqualTo("EINVAL");
        assertThat(r.json().path("error").path("message").asString())
                .isEqualTo("/v1/snapshot/create: unknown field 'devcies'; known: devices, leaseSeconds");
        assertThat(engine.calls).isEmpty();
    }

    @Test
    void getIsRefusedForOperationsWithArguments() throws Exception {
        RawHttp.Reply r = RawHttp.send(socket, "GET", "/v1/snapshot/take", null);
        assertThat(r.errorName()).isEqualTo("EINVAL");
        assertThat(r.json().path("error").path("message").asString()).contains("method not allowed");
    }

    @Test
    void engineErrorsCarryTheirNameNumberAndMessage() throws Exception {
        UUID unknown = UUID.randomUUID();
        RawHttp.Reply r = post("/v1/snapshot/take", "{\"id\": \"" + unknown + "\"}");
        assertThat(r.status()).isEqualTo(404);
        assertThat(r.errorName()).isEqualTo("ESRCH");
        assertThat(r.json().path("error").path("errno").asInt()).isEqualTo(3);
        assertThat(r.json().path("error").path("message").asString()).contains(unknown.toString());
    }

    /**
     * The form of an append is the wire's to check (an absolute path, a size); whether the file or its
     * directory exists is the engine's (see e2e.EngineJudgesMeaningTest): the fake accepts any path.
     */
    @Test
    void appendStorageChecksTheFormAndPassesTheRestToTheEngine() throws Exception {
        String id = post("/v1/snapshot/create", "{\"devices\": [\"disk0\"]}").json().path("id").asString();
        engine.calls.clear();
        RawHttp.Reply rel = post("/v1/snapshot/append-storage", "{\"id\": \"" + id + "\", \"path\": \"diff.img\", \"size\": \"64M\"}");
        assertThat(rel.errorName()).isEqualTo("EINVAL");
        assertThat(rel.json().path("error").path("message").asString()).isEqualTo("/v1/snapshot/append-storage: "
                + "field 'path' ('diff.img') must be an absolute path (the daemon's working directory is not yours)");
        RawHttp.Reply badSize = post("/v1/snapshot/append-storage", "{\"id\": \"" + id + "\", \"path\": \""
                + dir.resolve("diff.img") + "\", \"size\": \"12Q\"}");
        assertThat(badSize.errorName()).isEqualTo("EINVAL");
        assertThat(engine.calls).isEmpty();
        RawHttp.Reply ok = post("/v1/snapshot/append-storage", "{\"id\": \"" + id + "\", \"path\": \""
                + dir.resolve("nodir/diff.img") + "\", \"size\": \"64M\", \"ranges\": [{\"sector\": 0, \"count\": 8}, \"16:8\"]}");
        assertThat(ok.status()).isEqualTo(200);
        assertThat(ok.body().trim()).isEqualTo("{}");
        assertThat(engine.appended).singleElement().satisfies(s -> {
            assertThat(s.path()).isEqualTo(dir.resolve("nodir/diff.img"));
            assertThat(s.createSizeBytes()).isEqualTo(64L << 20);
            assertThat(s.preallocate()).isTrue();
            assertThat(s.ranges()).containsExactly(new SectorRange(0, 8), new SectorRange(16, 8));
        });
    }

    @Test
    void takeWithFreezeRunsFsfreezeBeforeAndThawAfter() throws Exception {
        String id = post("/v1/snapshot/create", "{\"devices\": [\"disk0\"]}").json().path("id").asString();
        RawHttp.Reply r = post("/v1/snapshot/take", "{\"id\": \"" + id + "\", \"freeze\": [\"" + dir + "\"]}");
        assertThat(r.status()).isEqualTo(200);
        assertThat(commands).containsExactly(List.of("fsfreeze", "-f", dir.toString()),
                List.of("fsfreeze", "-u", dir.toString()));
    }

    @Test
    void takeRefusesAFreezeMountPointThatDoesNotExist() throws Exception {
        String id = post("/v1/snapshot/create", "{\"devices\": [\"disk0\"]}").json().path("id").asString();
        RawHttp.Reply r = post("/v1/snapshot/take", "{\"id\": \"" + id + "\", \"freeze\": [\"/no/such/mp\"]}");
        assertThat(r.errorName()).isEqualTo("ENOENT");
        assertThat(r.json().path("error").path("message").asString())
                .isEqualTo("freeze mount point /no/such/mp is not a directory");
        assertThat(engine.calls).noneMatch(c -> c.startsWith("take"));
        assertThat(commands).isEmpty();
    }

    @Test
    void waitEventBlocksOnlyItsOwnRequest() throws Exception {
        String id = post("/v1/snapshot/create", "{\"devices\": [\"disk0\"]}").json().path("id").asString();
        assertThat(post("/v1/snapshot/wait-event", "{\"id\": \"" + id + "\", \"timeoutMs\": 100}").json()
                .path("event").path("name").asString()).isEqualTo("low_free_space");
        CompletableFuture<RawHttp.Reply> waiting = CompletableFuture.supplyAsync(() -> {
            try {
                return post("/v1/snapshot/wait-event", "{\"id\": \"" + id + "\", \"timeoutMs\": 5000}");
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        for (int i = 0; i < 20; i++) {
            assertThat(RawHttp.send(socket, "GET", "/v1/version", null).status()).isEqualTo(200);
        }
        assertThat(waiting).isNotDone();
        assertThat(post("/v1/snapshot/destroy", "{\"id\": \"" + id + "\"}").status()).isEqualTo(200);
        RawHttp.Reply woken = waiting.get(5, TimeUnit.SECONDS);
        assertThat(woken.errorName()).isEqualTo("ESRCH");
    }

    @Test
    void waitEventTimeoutIsEnoent() throws Exception {
        String id = post("/v1/snapshot/create", "{\"devices\": [\"disk0\"]}").json().path("id").asString();
        post("/v1/snapshot/wait-event", "{\"id\": \"" + id + "\", \"timeoutMs\": 0}");
        RawHttp.Reply r = post("/v1/snapshot/wait-event", "{\"id\": \"" + id + "\", \"timeoutMs\": 50}");
        assertThat(r.errorName()).isEqualTo("ENOENT");
        assertThat(r.json().path("error").path("errno").asInt()).isEqualTo(2);
    }

    @Test
    void readCbtMapReturnsBase64OfTheRequestedPiece() throws Exception {
        RawHttp.Reply r = post("/v1/tracker/read-cbt-map", "{\"device\": \"disk0\", \"offset\": 10, \"length\": 5}");
        assertThat(r.json().path("length").asInt()).isEqualTo(5);
        assertThat(java.util.Base64.getDecoder().decode(r.json().path("data").asString()))
                .containsExactly(10, 11, 12, 13, 14);
        assertThat(post("/v1/tracker/read-cbt-map", "{\"device\": \"disk0\", \"length\": 0}").errorName())
                .isEqualTo("EINVAL");
    }

    @Test
    void afterStopAcceptingRequestsGetEshutdown() throws Exception {
        server.stopAccepting();
        RawHttp.Reply r = RawHttp.send(socket, "GET", "/v1/version", null);
        assertThat(r.status()).isEqualTo(503);
        assertThat(r.errorName()).isEqualTo(Errno.ESHUTDOWN.name());
    }

    @Test
    void closeRemovesTheSocket() throws Exception {
        server.close();
        assertThat(socket).doesNotExist();
        assertThatThrownBy(() -> RawHttp.send(socket, "GET", "/v1/version", null)).isInstanceOf(java.io.IOException.class);
    }
}
