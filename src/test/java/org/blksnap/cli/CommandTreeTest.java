package org.blksnap.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/**
 * A run builds only the branch of the command tree its arguments name (CommandTree); what it
 * prints, and its exit code, are those of the whole tree (Main), for the help of every command and
 * for mistakes.
 */
class CommandTreeTest {
    private static final Map<String, String> ENV = Map.of("BLKSNAP_CONTROL", "/nonexistent/control.sock");

    private record Outcome(int exitCode, String out, String err) {
    }

    private static Outcome run(BiFunction<String[], Tool, CommandLine> tree, List<String> args) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        int rc = Main.run(args.toArray(String[]::new), new PrintStream(o, true, StandardCharsets.UTF_8),
                new PrintStream(e, true, StandardCharsets.UTF_8), ENV, tree);
        return new Outcome(rc, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
    }

    private static void assertSameAsTheWholeTree(List<String> args) {
        Outcome whole = run((a, session) -> Main.commandLine(new Main(session)), args);
        assertThat(run(CommandTree::of, args)).as("blksnap %s", String.join(" ", args)).isEqualTo(whole);
    }

    /** Every command's path, root first. */
    private static List<List<String>> paths(CommandLine c, List<String> path, List<List<String>> into) {
        into.add(path);
        c.getSubcommands().forEach((name, sub) -> {
            List<String> p = new ArrayList<>(path);
            p.add(name);
            paths(sub, p, into);
        });
        return into;
    }

    @Test
    void everyCommandsHelpIsTheWholeTreesHelp() {
        List<List<String>> all = paths(Main.commandLine(new Main()), List.of(), new ArrayList<>());
        assertThat(all).hasSizeGreaterThan(25);
        for (List<String> path : all) {
            List<String> args = new ArrayList<>(path);
            args.add("--help");
            assertSameAsTheWholeTree(args);
        }
        assertSameAsTheWholeTree(List.of("--json", "--help"));
        assertSameAsTheWholeTree(List.of("--version"));
        assertSameAsTheWholeTree(List.of("device", "--version"));
    }

    @Test
    void mistakesAndCallsReadTheSameAsWithTheWholeTree() {
        for (List<String> args : List.<List<String>>of(List.of(), List.of("--json"), List.of("--bogus"), List.of("--control"),
                List.of("devices"), List.of("device", "lst"), List.of("device"), List.of("version", "extra"),
                List.of("--bogus", "version"), List.of("--", "version"), List.of("-h", "version"),
                List.of("--help", "snapshot", "create"), List.of("snapshot", "create"),
                List.of("snapshot", "destroy", "--id", "not-a-uuid"), List.of("tracker", "mark-dirty", "--device", "d",
                        "--range", "1"), List.of("--control=/nonexistent/x.sock", "version"),
                List.of("--json", "device", "list"), List.of("snapshot_create", "-d", "disk0"),
                List.of("stretch_snapshot", "-i", "x"), List.of("snapshot_destroy", "--id"))) {
            assertSameAsTheWholeTree(args);
        }
    }

    @Test
    void aCommandWordBuildsOnlyItsTopLevelCommandAndNoWordOutlinesThemAll() {
        assertThat(CommandTree.of(new String[] {"--control", "x.sock", "device", "list"}, new Tool()).getSubcommands())
                .containsOnlyKeys("device");
        assertThat(CommandTree.of(new String[] {"device", "list"}, new Tool()).getSubcommands().get("device")
                .getSubcommands()).containsOnlyKeys("list", "add", "remove");
        assertThat(CommandTree.of(new String[] {"snapshot_create", "-d", "x"}, new Tool()).getSubcommands())
                .containsOnlyKeys("snapshot");
        CommandLine outline = CommandTree.of(new String[] {"--help"}, new Tool());
        assertThat(outline.getSubcommands().keySet())
                .containsExactlyElementsOf(Main.commandLine(new Main()).getSubcommands().keySet());
        assertThat(outline.getSubcommands().get("device").getSubcommands()).isEmpty();
        Object whole = CommandTree.of(new String[] {"devices"}, new Tool()).getCommand();
        assertThat(whole).isInstanceOf(Main.class);
    }
}
