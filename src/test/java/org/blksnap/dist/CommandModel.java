package org.blksnap.dist;

import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;

/** The commands of a picocli model, for the tests that check what is generated from it. */
final class CommandModel {
    private CommandModel() {
    }

    /** {@code root} and every subcommand below it, each once, parents first. */
    static List<CommandSpec> commands(CommandSpec root) {
        List<CommandSpec> all = new ArrayList<>(List.of(root));
        for (CommandLine sub : root.subcommands().values()) {
            if (!all.contains(sub.getCommandSpec())) {
                all.addAll(commands(sub.getCommandSpec()));
            }
        }
        return all.stream().distinct().toList();
    }
}
