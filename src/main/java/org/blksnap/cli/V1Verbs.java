package org.blksnap.cli;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

/**
 * The upstream v1 tool's verbs, so that its scripts port by replacing device paths with device
 * names. Each verb is rewritten, before parsing, into the command it is ({@code snapshot_create -d
 * disk0} into {@code snapshot create --device=disk0}): the v1 verbs have no options or code of
 * their own, only this table of the spellings that differ. Stateless.
 */
final class V1Verbs {
    /**
     * One v1 verb.
     *
     * @param command the new command's words
     * @param options v1 option spellings that differ from the new ones (the rest are the same)
     * @param values  how a value of a (new) option is rewritten, where v1 read it differently
     */
    private record Verb(String name, List<String> command, Map<String, String> options,
                        Map<String, UnaryOperator<String>> values) {
        Verb(String name, String command, String... optionPairs) {
            this(name, List.of(command.split(" ")), pairs(optionPairs), Map.of());
        }

        Verb withValue(String option, UnaryOperator<String> rewrite) {
            return new Verb(name, command, options, Map.of(option, rewrite));
        }
    }

    private static final List<Verb> VERBS = List.of(
            new Verb("snapshot_create", "snapshot create", "-d", "--device"),
            new Verb("snapshot_appendstorage", "snapshot append-storage", "-i", "--id", "-f", "--file", "-s", "--size",
                    "-r", "--range"),
            new Verb("snapshot_take", "snapshot take", "-i", "--id"),
            new Verb("snapshot_collect", "snapshot collect"),
            new Verb("snapshot_waitevent", "snapshot wait-event", "-i", "--id", "-t", "--timeout"),
            new Verb("snapshot_destroy", "snapshot destroy", "-i", "--id"),
            new Verb("stretch_snapshot", "snapshot stretch", "-i", "--id", "-p", "--dir", "--path", "--dir",
                    "-l", "--limit").withValue("--limit", V1Verbs::mebibytesUnlessSuffixed),
            new Verb("tracker_collect", "tracker collect"),
            new Verb("tracker_readcbtmap", "tracker read-cbt-map", "-d", "--device", "-f", "--file"),
            new Verb("tracker_markdirtyblock", "tracker mark-dirty", "-d", "--device", "-r", "--range",
                    "--ranges", "--range"),
            new Verb("tracker_remove", "tracker remove", "-d", "--device"));

    private V1Verbs() {
    }

    /**
     * The arguments with a v1 verb (after the tool's own options) rewritten into its command; other
     * arguments are returned as they are. Option values are passed on attached ({@code --id=X}), so
     * a value that starts with a dash stays a value.
     *
     * @param root the tool's command tree, which says which options take a value
     */
    static String[] rewrite(String[] args, CommandSpec root) {
        int at = 0;
        while (at < args.length && args[at].startsWith("-") && !args[at].equals("--")) {
            at += takesSeparateValue(root, args[at]) ? 2 : 1;
        }
        Verb verb = at < args.length ? find(args[at]) : null;
        if (verb == null) {
            return args;
        }
        CommandSpec target = root;
        for (String word : verb.command()) {
            target = target.subcommands().get(word).getCommandSpec();
        }
        List<String> out = new ArrayList<>(Arrays.asList(args).subList(0, at));
        out.addAll(verb.command());
        for (int i = at + 1; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--") || !a.startsWith("-")) {
                out.add(a);
                continue;
            }
            String name = a;
            String value = null;
            int eq = a.indexOf('=');
            if (eq > 0) {
                name = a.substring(0, eq);
                value = a.substring(eq + 1);
            } else if (!a.startsWith("--") && a.length() > 2 && verb.options().containsKey(a.substring(0, 2))) {
                name = a.substring(0, 2); // -iVALUE
                value = a.substring(2);
            }
            name = verb.options().getOrDefault(name, name);
            OptionSpec option = target.findOption(name);
            if (option == null || option.arity().max() == 0) {
                out.add(value == null ? name : a); // a flag, or unknown: picocli judges it
                continue;
            }
            if (value == null) {
                if (i + 1 == args.length) {
                    out.add(name); // picocli reports the missing value
                    continue;
                }
                value = args[++i];
            }
            out.add(name + "=" + verb.values().getOrDefault(name, UnaryOperator.identity()).apply(value));
        }
        return out.toArray(String[]::new);
    }

    /** The top-level command a command word is: the first word of a v1 verb's command, or the word itself. */
    static String topLevelCommand(String word) {
        Verb verb = find(word);
        return verb == null ? word : verb.command().getFirst();
    }

    /** The footer of the tool's help: {@code footer} and the v1 verbs with the commands they are. */
    static String[] helpFooter(String[] footer) {
        List<String> lines = new ArrayList<>(List.of(footer));
        lines.add("");
        lines.add("Upstream v1 verbs (with their option names; stretch_snapshot --limit is in MiB unless suffixed):");
        for (Verb v : VERBS) {
            lines.add(String.format("  %-24s = %s", v.name(), String.join(" ", v.command())));
        }
        return lines.toArray(String[]::new);
    }

    private static Verb find(String word) {
        return VERBS.stream().filter(v -> v.name().equals(word)).findFirst().orElse(null);
    }

    /** Whether {@code arg} is an option of {@code spec} whose value is the next argument. */
    static boolean takesSeparateValue(CommandSpec spec, String arg) {
        OptionSpec o = spec.findOption(arg);
        return o != null && o.arity().max() > 0 && arg.indexOf('=') < 0;
    }

    /** v1's {@code --limit}: a plain number is MiB. */
    private static String mebibytesUnlessSuffixed(String value) {
        String v = value.trim();
        return !v.isEmpty() && v.chars().allMatch(Character::isDigit) ? v + "M" : v;
    }

    private static Map<String, String> pairs(String... pairs) {
        Map<String, String> m = new LinkedHashMap<>();
        for (int i = 0; i < pairs.length; i += 2) {
            m.put(pairs[i], pairs[i + 1]);
        }
        return m;
    }
}
