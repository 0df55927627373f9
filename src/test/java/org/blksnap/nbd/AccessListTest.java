package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.net.InetAddress;
import java.util.List;
import javax.security.auth.x500.X500Principal;
import org.junit.jupiter.api.Test;

class AccessListTest {
    static NbdClient tcp(String address) throws Exception {
        return new NbdClient(InetAddress.getByName(address), null, null, false, null);
    }

    static NbdClient verified(String subject) throws Exception {
        return new NbdClient(InetAddress.getByName("192.0.2.7"), null, null, true, new X500Principal(subject));
    }

    @Test
    void addressRulesMatchWholeAddressesAndNetworksOfEitherFamily() throws Exception {
        AccessList a = AccessList.parse(List.of("10.0.0.0/8", "addr:192.168.1.0/23", "127.0.0.1", "fd00::/8"));
        assertThat(a.allows(tcp("10.200.3.4"))).isTrue();
        assertThat(a.allows(tcp("11.0.0.1"))).isFalse();
        assertThat(a.allows(tcp("192.168.0.255"))).isTrue();
        assertThat(a.allows(tcp("192.168.2.1"))).isFalse();
        assertThat(a.allows(tcp("127.0.0.1"))).isTrue();
        assertThat(a.allows(tcp("127.0.0.2"))).isFalse();
        assertThat(a.allows(tcp("fd12::1"))).isTrue();
        assertThat(a.allows(tcp("fe80::1"))).isFalse();
        assertThat(a.allows(NbdClient.UNKNOWN)).isFalse();
        assertThat(AccessList.parse(List.of("0.0.0.0/0")).allows(tcp("203.0.113.9"))).isTrue();
        assertThat(AccessList.parse(List.of("0.0.0.0/0")).allows(tcp("::1"))).as("no family crossing").isFalse();
    }

    @Test
    void subjectRulesMatchOnlyAVerifiedCertificateWithThatDistinguishedName() throws Exception {
        AccessList a = AccessList.parse(List.of("subject:CN=backup,O=Example"));
        assertThat(a.allows(verified("CN=backup, O=Example"))).isTrue();
        assertThat(AccessList.parse(List.of("subject:CN=backup;O=Example")).allows(verified("CN=backup,O=Example")))
                .isTrue();
        assertThat(a.allows(verified("CN=backup,O=Other"))).isFalse();
        assertThat(a.allows(verified("O=Example,CN=backup"))).as("order counts").isFalse();
        assertThat(a.allows(new NbdClient(InetAddress.getByName("192.0.2.7"), null, null, true, null))).isFalse();
    }

    @Test
    void pskRulesMatchOnlyTheIdentityWhoseKeyTheClientProved() throws Exception {
        AccessList a = AccessList.parse(List.of("psk:alice"));
        InetAddress peer = InetAddress.getByName("192.0.2.7");
        assertThat(a.allows(new NbdClient(peer, null, null, true, null, "alice"))).isTrue();
        assertThat(a.allows(new NbdClient(null, "alice", "alice", true, null, "bob"))).isFalse();
        assertThat(a.allows(new NbdClient(peer, null, null, true, null, "Alice"))).as("case counts").isFalse();
        assertThat(a.allows(new NbdClient(null, "alice", "alice", false, null))).as("not a Unix user rule").isFalse();
        assertThat(a.allows(verified("CN=alice"))).as("not a certificate subject").isFalse();
    }

    @Test
    void unixRulesMatchThePeersUserOrGroup() {
        AccessList a = AccessList.parse(List.of("user:backup", "group:disk"));
        assertThat(a.allows(new NbdClient(null, "backup", "backup", false, null))).isTrue();
        assertThat(a.allows(new NbdClient(null, "alice", "disk", false, null))).isTrue();
        assertThat(a.allows(new NbdClient(null, "alice", "alice", false, null))).isFalse();
    }

    @Test
    void malformedRulesAreRefusedNamingTheRule() {
        for (String bad : List.of("backup", "host.example.com", "10.0.0.0/33", "fd00::/129", "user:", "psk:", "subject:nonsense",
                "addr:10.0.0.0/x")) {
            assertThatThrownBy(() -> AccessList.parse(List.of(bad))).as(bad).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("access rule '" + bad + "'");
        }
    }
}
