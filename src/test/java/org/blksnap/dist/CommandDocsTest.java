package org.blksnap.dist;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import org.blksnap.cli.Main;
import org.blksnap.daemon.Blksnapd;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.CommandSpec;

/**
 * The command models that --help, the man pages and the completion are generated from: every
 * command, option and positional parameter of {@code blksnap} and {@code blksnapd} says what it is
 * (a missing description leaves a bare option in --help and merges two entries of a man page).
 */
class CommandDocsTest {
    private static List<String> undocumented(Object command) {
        List<String> missing = new ArrayList<>();
        for (CommandSpec c : CommandModel.commands(new CommandLine(command).getCommandSpec())) {
            if (String.join("", c.usageMessage().description()).isBlank()) {
                missing.add(c.qualifiedName(" ") + " (the command)");
            }
            List<ArgSpec> args = new ArrayList<>(c.options());
            args.addAll(c.positionalParameters());
            for (ArgSpec a : args) {
                if (!a.hidden() && String.join("", a.description()).isBlank()) {
                    missing.add(c.qualifiedName(" ") + " " + a.paramLabel()
                            + (a.isOption() ? " (" + ((CommandLine.Model.OptionSpec) a).longestName() + ")" : ""));
                }
            }
        }
        return missing;
    }

    @Test
    void everyCommandOptionAndParameterOfTheToolSaysWhatItIs() {
        assertThat(undocumented(new Main())).isEmpty();
    }

    @Test
    void everyOptionOfTheDaemonSaysWhatItIs() {
        assertThat(undocumented(new Blksnapd())).isEmpty();
    }
}
