package org.blksnap.daemon;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.blksnap.ctrl.api.InvalidValueException;
import org.blksnap.nbd.AccessList;
import org.blksnap.nbd.NbdClient;
import org.blksnap.nbd.NbdTls;

/**
 * Who may reach which export, and how: TLS ({@code --tls}, and either X.509 with {@code --tls-cert},
 * {@code --tls-key}, {@code --tls-ca}, {@code --tls-verify-peer}, or pre-shared keys with
 * {@code --tls-psk}; not both, as in nbdkit), allow-lists per export ({@code --allow
 * EXPORT=RULE}, see {@link AccessList} for the rules) and exports served read-only
 * ({@code --read-only NAME}).
 *
 * <p>An export's allow-list is the one given for its name; an image without one of its own uses
 * its device's (a snapshot image holds that device's data); {@code *} gives the list of every
 * export that has none; an export with no list at all is open to every client that reaches the
 * server. Immutable.
 *
 * @param tlsMode       off, on (plain and TLS clients) or require (TLS only)
 * @param tlsCert       the server certificate (PEM); with {@code tlsKey}, or else {@code tlsPsk}, needed unless off
 * @param tlsKey        its private key (PEM)
 * @param tlsCa         the CA of client certificates (PEM), or null
 * @param tlsVerifyPeer whether clients must present a certificate signed by {@code tlsCa}
 * @param tlsPsk        a gnutls psktool key file ({@code IDENTITY:HEXKEY} lines) for TLS with pre-shared keys,
 *                      or null
 * @param allow         access rules by export name ({@code *} for the rest), in the order given
 * @param readOnly      names of devices and images served read-only
 */
public record NbdSecurity(NbdTls.Mode tlsMode, Path tlsCert, Path tlsKey, Path tlsCa, boolean tlsVerifyPeer,
                          Path tlsPsk, Map<String, AccessList> allow, Set<String> readOnly) {
    /** No TLS, no allow-lists, nothing read-only beyond what other flags say. */
    public static final NbdSecurity NONE = new NbdSecurity(NbdTls.Mode.OFF, null, null, null, false, null, Map.of(),
            Set.of());
    /** The export name whose allow-list applies to exports without one. */
    public static final String EVERY_EXPORT = "*";

    public NbdSecurity {
        String tls = "--tls " + tlsMode.name().toLowerCase(java.util.Locale.ROOT);
        if (tlsMode != NbdTls.Mode.OFF && tlsPsk != null) {
            if (tlsCert != null || tlsKey != null) {
                throw new InvalidValueException("--tls-psk cannot be combined with --tls-cert or --tls-key: the server"
                        + " uses one kind of TLS credentials, X.509 certificates or pre-shared keys (as nbdkit does)");
            }
            if (tlsCa != null || tlsVerifyPeer) {
                throw new InvalidValueException("--tls-ca and --tls-verify-peer are for X.509 client certificates;"
                        + " with --tls-psk every client proves that it holds the key of its identity");
            }
        } else if (tlsMode != NbdTls.Mode.OFF && (tlsCert == null || tlsKey == null)) {
            throw new InvalidValueException(tls + " needs --tls-cert and --tls-key (X.509), or --tls-psk (pre-shared keys)");
        }
        if (tlsVerifyPeer && tlsCa == null) {
            throw new InvalidValueException("--tls-verify-peer needs --tls-ca (the CA that signs client certificates)");
        }
        allow = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(allow));
        readOnly = Set.copyOf(readOnly);
    }

    /**
     * Parses {@code --allow} values, each {@code EXPORT=RULE} (repeat the flag for more rules of an export).
     *
     * @throws InvalidValueException naming the value and what is wrong with it
     */
    public static Map<String, AccessList> parseAllow(List<String> values) {
        Map<String, List<String>> rules = new LinkedHashMap<>();
        for (String v : values) {
            int eq = v.indexOf('=');
            String export = eq < 0 ? "" : v.substring(0, eq).trim();
            String rule = eq < 0 ? "" : v.substring(eq + 1).trim();
            if (export.isEmpty() || rule.isEmpty()) {
                throw new InvalidValueException("--allow '" + v + "' must be EXPORT=RULE (EXPORT may be * for every"
                        + " export without rules of its own)");
            }
            rules.computeIfAbsent(export, k -> new ArrayList<>()).add(rule);
        }
        Map<String, AccessList> out = new LinkedHashMap<>();
        rules.forEach((export, list) -> {
            try {
                out.put(export, AccessList.parse(list));
            } catch (IllegalArgumentException e) {
                throw new InvalidValueException("--allow for export " + export + ": " + e.getMessage());
            }
        });
        return out;
    }

    /** Names given to {@code --read-only}, trimmed, without empty ones. */
    public static Set<String> parseReadOnly(List<String> values) {
        Set<String> out = new LinkedHashSet<>();
        for (String v : values) {
            if (!v.isBlank()) {
                out.add(v.trim());
            }
        }
        return out;
    }

    /** The TLS settings for the NBD server, with the PEM files or the key file read. */
    NbdTls tls() throws IOException {
        if (tlsPsk != null) {
            return NbdTls.fromPskFile(tlsMode, tlsPsk);
        }
        return NbdTls.fromPem(tlsMode, tlsCert, tlsKey, tlsCa, tlsVerifyPeer);
    }

    /**
     * Whether {@code client} may see and open export {@code name}.
     *
     * @param deviceOfImage the device of the image {@code name}, or null when {@code name} is not an image
     */
    boolean allows(String name, String deviceOfImage, NbdClient client) {
        AccessList list = allow.get(name);
        if (list == null && deviceOfImage != null) {
            list = allow.get(deviceOfImage);
        }
        if (list == null) {
            list = allow.get(EVERY_EXPORT);
        }
        return list == null || list.allows(client);
    }
}
