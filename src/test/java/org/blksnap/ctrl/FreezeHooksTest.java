package org.blksnap.ctrl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FreezeHooksTest {
    @TempDir
    Path dir;
    Path a;
    Path b;
    Path c;
    final List<String> commands = new ArrayList<>();

    @BeforeEach
    void mountPoints() throws IOException {
        a = Files.createDirectory(dir.resolve("a"));
        b = Files.createDirectory(dir.resolve("b"));
        c = Files.createDirectory(dir.resolve("c"));
    }

    /** A runner that records each command and fails those listed (exit 1). */
    private FreezeHooks.CommandRunner failing(Set<String> failures) {
        return cmd -> {
            String line = String.join(" ", cmd);
            commands.add(line);
            return new FreezeHooks.CommandRunner.Result(failures.contains(line) ? 1 : 0, "no");
        };
    }

    @Test
    void aMountPointThatIsNotADirectoryIsEnoentBeforeAnythingIsFrozen() {
        Path missing = dir.resolve("missing");
        assertThatThrownBy(() -> FreezeHooks.of(List.of(a, missing), failing(Set.of())))
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.ENOENT))
                .hasMessage("freeze mount point " + missing + " is not a directory");
        assertThat(commands).isEmpty();
    }

    @Test
    void aFailedFreezeAbortsAndOnlyTheOnesFrozenAreThawed() throws Exception {
        FreezeHooks h = FreezeHooks.of(List.of(a, b, c), failing(Set.of("fsfreeze -f " + b)));
        assertThatThrownBy(h::beforeBarrier)
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.EIO))
                .hasMessage("fsfreeze -f " + b + " failed (exit 1): no");
        h.afterBarrier();
        assertThat(commands).containsExactly("fsfreeze -f " + a, "fsfreeze -f " + b, "fsfreeze -u " + a);
        assertThat(h.frozen()).isEmpty();
    }

    @Test
    void everyThawIsTriedAndTheFirstFailureIsThrownWithTheLaterOnesSuppressed() throws Exception {
        FreezeHooks h = FreezeHooks.of(List.of(a, b, c), failing(Set.of("fsfreeze -u " + a, "fsfreeze -u " + c)));
        h.beforeBarrier();
        assertThatThrownBy(h::afterBarrier).isInstanceOfSatisfying(BlksnapException.class, e -> {
            assertThat(e.errno()).isEqualTo(Errno.EIO);
            assertThat(e).hasMessage("fsfreeze -u " + a + " failed (exit 1): no");
            assertThat(e.getSuppressed()).singleElement().satisfies(s ->
                    assertThat(s).hasMessage("fsfreeze -u " + c + " failed (exit 1): no"));
        });
        assertThat(commands).endsWith("fsfreeze -u " + a, "fsfreeze -u " + b, "fsfreeze -u " + c);
        assertThat(h.frozen()).containsExactly(a, c);
    }

    @Test
    void aRunnerThatCannotRunTheThawDoesNotStopTheOthers() throws Exception {
        IOException broken = new IOException("no fsfreeze");
        List<String> ran = new ArrayList<>();
        FreezeHooks h = FreezeHooks.of(List.of(a, b), cmd -> {
            ran.add(String.join(" ", cmd));
            if (cmd.equals(List.of("fsfreeze", "-u", a.toString()))) {
                throw broken;
            }
            return new FreezeHooks.CommandRunner.Result(0, "");
        });
        h.beforeBarrier();
        assertThatThrownBy(h::afterBarrier).isSameAs(broken);
        assertThat(ran).endsWith("fsfreeze -u " + a, "fsfreeze -u " + b);
        assertThat(h.frozen()).containsExactly(a);
    }
}
