package org.blksnap.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

/**
 * The command tree of one run: picocli builds a command's model by reflection on its annotations,
 * which for the whole tree ({@link Main}, 29 commands) is most of what a call costs (about 0.1 s).
 * A run gets the root ({@link Tool}) with only the branch its arguments name, built from the same
 * annotations, so parsing, help and errors are the same (CommandTreeTest compares them with the
 * whole tree's for every command):
 *
 * <ul>
 *   <li>a command word after the root's own options ({@code device list}, {@code --json version},
 *       or a v1 verb): that top-level command with all its subcommands;</li>
 *   <li>no command word ({@code --help}, {@code --version}, nothing): every top-level command as a
 *       name and description only, read from its {@code @Command}, which is all the root's help
 *       shows of it; such a command is never run (there is no word to run it);</li>
 *   <li>anything else (an unknown word or option, {@code --}, a help or version option before the
 *       word): the whole tree, so that picocli judges it as it always did.</li>
 * </ul>
 *
 * Stateless.
 */
final class CommandTree {
    private CommandTree() {
    }

    /**
     * The tree for {@code args}, configured for a run ({@link Main#configure}).
     *
     * @param session the run's root: a plain {@link Tool} (a {@link Main} would bring every command)
     */
    static CommandLine of(String[] args, Tool session) {
        CommandLine root = new CommandLine(session); // a Tool: the root's options, no subcommand
        CommandSpec spec = root.getCommandSpec();
        int at = 0;
        boolean help = false;
        while (at < args.length && args[at].startsWith("-")) {
            OptionSpec option = args[at].equals("--") ? null : spec.findOption(optionName(args[at]));
            if (option == null) {
                return whole(session);
            }
            help |= option.usageHelp() || option.versionHelp();
            at += V1Verbs.takesSeparateValue(spec, args[at]) ? 2 : 1;
        }
        if (at >= args.length) {
            return outline(root);
        }
        if (help) {
            return whole(session);
        }
        String word = V1Verbs.topLevelCommand(args[at]);
        for (Class<?> c : commands()) {
            if (c.getAnnotation(Command.class).name().equals(word)) {
                root.addSubcommand(word, c);
                return Main.configure(root);
            }
        }
        return whole(session);
    }

    /** The top-level commands, as {@link Main} lists them. */
    private static Class<?>[] commands() {
        return Main.class.getAnnotation(Command.class).subcommands();
    }

    /** The root with every top-level command as its name and description only (what the root's help shows). */
    private static CommandLine outline(CommandLine root) {
        for (Class<?> c : commands()) {
            Command command = c.getAnnotation(Command.class);
            CommandSpec sub = CommandSpec.create().name(command.name()).aliases(command.aliases());
            sub.usageMessage().description(command.description()).header(command.header()).hidden(command.hidden());
            root.addSubcommand(command.name(), sub);
        }
        return Main.configure(root);
    }

    private static CommandLine whole(Tool session) {
        return Main.commandLine(new Main(session));
    }

    private static String optionName(String arg) {
        int eq = arg.indexOf('=');
        return eq > 0 ? arg.substring(0, eq) : arg;
    }
}
