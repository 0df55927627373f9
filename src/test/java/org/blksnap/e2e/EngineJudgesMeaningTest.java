package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.blksnap.cli.CliRun;
import org.blksnap.ctrl.RawHttp;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The control layer checks only the form of a request; what it means is judged by the engine alone.
 * Each rule the control layer used to check a second time is answered here by the real engine,
 * through the real daemon, with the same errno and a message that says what is wrong.
 */
class EngineJudgesMeaningTest {
    @TempDir
    Path dir;
    DaemonHarness d;
    String id;

    @BeforeEach
    void start() throws Exception {
        d = DaemonHarness.start(dir.resolve("data"), List.of("disk0=16M"), List.of("diff_storage_minimum=8192"));
        id = d.ok("snapshot", "create", "--device", "disk0");
    }

    @AfterEach
    void stop() throws Exception {
        d.close();
    }

    private RawHttp.Reply post(String op, String body) throws Exception {
        return RawHttp.send(d.control(), "POST", "/v1/" + op, body);
    }

    private static void assertRefused(RawHttp.Reply r, String errno, String message) {
        assertThat(r.errorName()).as(r.body()).isEqualTo(errno);
        assertThat(r.json().path("error").path("message").asString()).isEqualTo(message);
    }

    private RawHttp.Reply append(Path path, String sizeField) throws Exception {
        return post("snapshot/append-storage", "{\"id\": \"" + id + "\", \"path\": \"" + path + "\""
                + (sizeField == null ? "" : ", \"size\": " + sizeField) + "}");
    }

    @Test
    void aDirectoryAsStorageIsEinval() throws Exception {
        for (String size : new String[] {null, "\"4M\""}) {
            assertRefused(append(dir, size), "EINVAL",
                    "storage " + dir + " is neither a regular file nor a block device");
        }
    }

    @Test
    void aMissingFileWithoutASizeIsEnoent() throws Exception {
        Path missing = dir.resolve("missing.img");
        assertRefused(append(missing, null), "ENOENT",
                "storage " + missing + " does not exist (give a size to create it)");
    }

    @Test
    void aFileInAMissingDirectoryIsEnoent() throws Exception {
        Path file = dir.resolve("nodir/diff.img");
        assertRefused(append(file, "\"4M\""), "ENOENT",
                "directory " + file.getParent() + " of storage " + file + " does not exist");
        assertThat(file.getParent()).doesNotExist();
    }

    @Test
    void aSizeThatIsNotAMultipleOf512IsEinvalWhetherTheFileExistsOrNot() throws Exception {
        Path missing = dir.resolve("new.img");
        assertRefused(append(missing, "1000"), "EINVAL",
                "size of storage " + missing + " (1000 bytes) must be a multiple of 512");
        assertThat(missing).doesNotExist();
        Path existing = Files.write(dir.resolve("old.img"), new byte[4096]);
        assertRefused(append(existing, "1000"), "EINVAL",
                "size of storage " + existing + " (1000 bytes) must be a multiple of 512");
        assertThat(d.ok("--json", "status")).contains("\"capacitySectors\":0");
    }

    @Test
    void aSnapshotOfNoDeviceIsEinval() throws Exception {
        assertRefused(post("snapshot/create", "{\"devices\": []}"), "EINVAL", "a snapshot needs at least one device");
    }

    @Test
    void aNegativeWaitEventTimeoutIsEinval() throws Exception {
        assertRefused(post("snapshot/wait-event", "{\"id\": \"" + id + "\", \"timeoutMs\": -1}"), "EINVAL",
                "timeout (-1 ms) must be >= 0");
        assertThat(d.ok("snapshot", "wait-event", "--id", id, "--timeout", "100"))
                .as("the event is still there").startsWith("low_free_space");
    }

    @Test
    void aNegativeCbtMapOffsetIsEinval() throws Exception {
        d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("ds").toString(), "--size", "8M");
        d.ok("snapshot", "take", "--id", id);
        assertRefused(post("tracker/read-cbt-map", "{\"device\": \"disk0\", \"offset\": -1, \"length\": 16}"),
                "EINVAL", "disk0: CBT read offset (-1) and length (16) must be >= 0");
    }

    /** The daemon opens the store of a new device; the name, and whether a device may go, are the engine's. */
    @Test
    void aDevicesNameAndWhetherItMayBeRemovedAreJudgedByTheEngine() throws Exception {
        Path file = dir.resolve("d9.img");
        assertRefused(post("device/add", "{\"name\": \"a/b\", \"path\": \"" + file + "\", \"size\": \"4M\"}"),
                "EINVAL", "device name 'a/b' must be 1-128 letters, digits, '.', '_' or '-', start with a letter or digit,"
                        + " and not start with blksnap-image");
        assertRefused(post("device/add", "{\"name\": \"disk0\", \"path\": \"" + file + "\", \"size\": \"4M\"}"),
                "EEXIST", "device disk0 already exists");
        assertThat(file).as("the file created for the refused device is gone").doesNotExist();
        assertRefused(post("device/remove", "{\"name\": \"disk0\"}"), "EBUSY",
                "device disk0 is in snapshot " + id + "; destroy it first (or force the removal, which corrupts the"
                        + " snapshot)");
        assertRefused(post("device/remove", "{\"name\": \"nosuch\"}"), "ENXIO", "no device 'nosuch'");
    }

    @Test
    void theToolReportsTheEnginesAnswerWithItsErrno() {
        CliRun r = d.fails(22, "EINVAL", "snapshot", "append-storage", "--id", id, "--file", dir.toString());
        assertThat(r.err()).contains("is neither a regular file nor a block device");
    }
}
