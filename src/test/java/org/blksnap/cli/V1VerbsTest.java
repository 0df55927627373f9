package org.blksnap.cli;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;
import picocli.CommandLine.Model.CommandSpec;

/** The v1 verbs become the new commands before parsing; the rewrite is the only thing they have. */
class V1VerbsTest {
    private final CommandSpec root = Main.commandLine(new Main()).getCommandSpec();

    private String[] rewrite(String... args) {
        return V1Verbs.rewrite(args, root);
    }

    @Test
    void aV1VerbAfterTheToolsOwnOptionsBecomesItsCommandWithTheNewOptionNames() {
        assertThat(rewrite("--control", "x.sock", "--json", "stretch_snapshot", "-i", "ID", "-p", "d", "-l", "100"))
                .containsExactly("--control", "x.sock", "--json", "snapshot", "stretch", "--id=ID", "--dir=d",
                        "--limit=100M");
        assertThat(rewrite("tracker_markdirtyblock", "-d", "disk0", "--ranges", "0:8", "-r16:8"))
                .containsExactly("tracker", "mark-dirty", "--device=disk0", "--range=0:8", "--range=16:8");
    }

    @Test
    void stretchSnapshotsLimitIsMibOnlyWhenItHasNoSuffix() {
        assertThat(rewrite("stretch_snapshot", "--limit=1536K")).containsExactly("snapshot", "stretch", "--limit=1536K");
        assertThat(rewrite("stretch_snapshot", "--path", "d", "-l", "2")).containsExactly("snapshot", "stretch",
                "--dir=d", "--limit=2M");
        assertThat(rewrite("snapshot_appendstorage", "-s", "2")).as("other sizes stay bytes")
                .containsExactly("snapshot", "append-storage", "--size=2");
    }

    @Test
    void aValueThatLooksLikeAnOptionStaysAValue() {
        assertThat(rewrite("snapshot_waitevent", "-i", "-d", "-t", "-1"))
                .containsExactly("snapshot", "wait-event", "--id=-d", "--timeout=-1");
    }

    @Test
    void flagsUnknownOptionsAndOtherCommandsPassUnchanged() {
        assertThat(rewrite("snapshot_take", "-h", "-x", "--freeze", "/mnt"))
                .containsExactly("snapshot", "take", "-h", "-x", "--freeze=/mnt");
        String[] other = {"--control", "snapshot_create", "snapshot", "create", "-d", "x"};
        assertThat(rewrite(other)).isSameAs(other);
    }
}
