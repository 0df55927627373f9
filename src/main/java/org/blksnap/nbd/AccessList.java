package org.blksnap.nbd;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import javax.security.auth.x500.X500Principal;

/**
 * Who may see and open an export: a list of rules, any one of which lets a client in. Rules:
 *
 * <ul>
 *   <li>{@code subject:DN} (DN as {@code openssl x509 -noout -subject -nameopt RFC2253} prints it, e.g.
 *       {@code subject:CN=backup,O=Example}; {@code ;} may separate the parts instead of {@code ,}): a
 *       client whose certificate TLS verified against the CA ({@code --tls-verify-peer}) with that subject;</li>
 *   <li>{@code psk:IDENTITY} (e.g. {@code psk:alice}, compared exactly, case included): a client that
 *       proved in the TLS handshake that it holds the key of that identity of the key file
 *       ({@code --tls-psk});</li>
 *   <li>{@code addr:ADDRESS[/PREFIX]}, or the address alone ({@code 10.0.0.0/8}, {@code 127.0.0.1},
 *       {@code fd00::/8}): a TCP client from that address or network, with or without TLS;</li>
 *   <li>{@code user:NAME} and {@code group:NAME}: a Unix socket client running as that user or group
 *       (the kernel's peer credentials, {@code SO_PEERCRED}).</li>
 * </ul>
 *
 * <p>Immutable and thread-safe.
 */
public final class AccessList {
    private final List<Rule> rules;
    private final List<String> texts;

    private AccessList(List<Rule> rules, List<String> texts) {
        this.rules = List.copyOf(rules);
        this.texts = List.copyOf(texts);
    }

    /**
     * Parses rules in the forms above.
     *
     * @throws IllegalArgumentException naming the rule and what is wrong with it
     */
    public static AccessList parse(List<String> ruleTexts) {
        List<Rule> rules = new ArrayList<>();
        for (String text : ruleTexts) {
            rules.add(rule(text.trim()));
        }
        return new AccessList(rules, ruleTexts.stream().map(String::trim).toList());
    }

    /** Whether any rule lets this client in. */
    public boolean allows(NbdClient client) {
        for (Rule r : rules) {
            if (r.matches(client)) {
                return true;
            }
        }
        return false;
    }

    /** The rules as given. */
    public List<String> rules() {
        return texts;
    }

    @Override
    public String toString() {
        return String.join(" | ", texts);
    }

    private sealed interface Rule {
        boolean matches(NbdClient c);
    }

    private record Subject(X500Principal subject) implements Rule {
        @Override
        public boolean matches(NbdClient c) {
            return c.subject() != null && c.subject().equals(subject);
        }
    }

    private record PskIdentity(String identity) implements Rule {
        @Override
        public boolean matches(NbdClient c) {
            return identity.equals(c.pskIdentity());
        }
    }

    private record Network(byte[] address, int prefixBits) implements Rule {
        @Override
        public boolean matches(NbdClient c) {
            if (c.address() == null) {
                return false;
            }
            byte[] a = c.address().getAddress();
            if (a.length != address.length) {
                return false;
            }
            int full = prefixBits / 8;
            for (int i = 0; i < full; i++) {
                if (a[i] != address[i]) {
                    return false;
                }
            }
            int rest = prefixBits % 8;
            if (rest == 0) {
                return true;
            }
            int mask = (0xff << (8 - rest)) & 0xff;
            return (a[full] & mask) == (address[full] & mask);
        }
    }

    private record UnixUser(String name) implements Rule {
        @Override
        public boolean matches(NbdClient c) {
            return name.equals(c.unixUser());
        }
    }

    private record UnixGroup(String name) implements Rule {
        @Override
        public boolean matches(NbdClient c) {
            return name.equals(c.unixGroup());
        }
    }

    private static Rule rule(String text) {
        int colon = text.indexOf(':');
        String kind = colon < 0 ? "" : text.substring(0, colon).toLowerCase(Locale.ROOT);
        String value = colon < 0 ? text : text.substring(colon + 1).trim();
        switch (kind) {
            case "subject" -> {
                try {
                    return new Subject(new X500Principal(value));
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("access rule '" + text + "': not a distinguished name (e.g."
                            + " subject:CN=backup,O=Example): " + e.getMessage());
                }
            }
            case "psk" -> {
                if (value.isEmpty()) {
                    throw new IllegalArgumentException("access rule '" + text + "': the PSK identity is missing (psk:IDENTITY,"
                            + " an identity of the --tls-psk key file)");
                }
                return new PskIdentity(value);
            }
            case "user", "group" -> {
                if (value.isEmpty()) {
                    throw new IllegalArgumentException("access rule '" + text + "': the " + kind + " name is missing");
                }
                return kind.equals("user") ? new UnixUser(value) : new UnixGroup(value);
            }
            case "addr" -> {
                return network(text, value);
            }
            default -> {
                // A bare IPv6 address has colons: then the whole text is the address.
                return network(text, text);
            }
        }
    }

    private static Rule network(String text, String value) {
        String form = "access rule '" + text + "' must be subject:DN, psk:IDENTITY, user:NAME, group:NAME or an address"
                + " [addr:]ADDRESS[/PREFIX] given as digits";
        int slash = value.indexOf('/');
        String host = slash < 0 ? value : value.substring(0, slash);
        if (host.isEmpty() || !host.matches("[0-9a-fA-F:.]+") || !(host.contains(".") || host.contains(":"))) {
            throw new IllegalArgumentException(form);
        }
        byte[] address;
        try {
            address = InetAddress.getByName(host).getAddress(); // digits only: no name lookup
        } catch (UnknownHostException e) {
            throw new IllegalArgumentException(form + ": " + e.getMessage());
        }
        int bits = address.length * 8;
        int prefix = bits;
        if (slash >= 0) {
            try {
                prefix = Integer.parseInt(value.substring(slash + 1));
            } catch (NumberFormatException e) {
                prefix = -1;
            }
            if (prefix < 0 || prefix > bits) {
                throw new IllegalArgumentException("access rule '" + text + "': prefix must be 0.." + bits);
            }
        }
        return new Network(address, prefix);
    }
}
