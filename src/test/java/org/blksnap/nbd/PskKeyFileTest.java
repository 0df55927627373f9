package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The gnutls psktool key file: what is read, and every bad line refused naming the file and the line. */
class PskKeyFileTest {
    @TempDir
    Path dir;

    Path file(String text) throws IOException {
        return Files.writeString(dir.resolve("keys.psk"), text);
    }

    @Test
    void readsTheLinesPsktoolWritesAndSkipsEmptyOnes() throws IOException {
        String alice = "88f3824b3e5659f52d00e959bacab954b6540344";
        PskKeyFile keys = PskKeyFile.read(file("alice:" + alice + "\n\nbob:00FF\r\ncarol with space:0a\n"));
        assertThat(keys.identities()).containsExactlyInAnyOrder("alice", "bob", "carol with space");
        assertThat(keys.key("alice")).isEqualTo(HexFormat.of().parseHex(alice));
        assertThat(keys.key("bob")).containsExactly(0x00, 0xff);
        assertThat(keys.key("Alice")).isNull();
        keys.key("bob")[0] = 1;
        assertThat(keys.key("bob")).as("copies are handed out").containsExactly(0x00, 0xff);
    }

    @Test
    void badLinesAreRefusedNamingTheFileAndTheLine() throws IOException {
        String[][] cases = {
                {"alice:00\nbob\n", "line 2: expected IDENTITY:HEXKEY"},
                {":00\n", "line 1: the identity before ':' is empty"},
                {"alice:xyz0\n", "line 1: the key of 'alice' is not hexadecimal"},
                {"alice:abc\n", "line 1: the key of 'alice' is not hexadecimal"},
                {"alice:\n", "line 1: the key of 'alice' is not hexadecimal"},
                {"alice:00\n\nalice:01\n", "line 3: identity 'alice' appears a second time"},
                {"#616c696365:00\n", "line 1: hexadecimal identities (#HEX) are not supported"},
                {"al\u0001ce:00\n", "line 1: the identity contains a control character"},
                {"a".repeat(129) + ":00\n", "line 1: the identity is longer than 128 bytes"},
                {"alice:" + "00".repeat(513) + "\n", "line 1: the key of 'alice' is 513 bytes"},
                {"\n\n", "holds no keys"},
        };
        for (String[] c : cases) {
            Path f = file(c[0]);
            assertThatThrownBy(() -> PskKeyFile.read(f)).as(c[1]).isInstanceOf(IOException.class)
                    .hasMessageStartingWith("PSK key file " + f).hasMessageContaining(c[1]);
        }
        Path missing = dir.resolve("missing.psk");
        assertThatThrownBy(() -> PskKeyFile.read(missing)).hasMessageContaining("PSK key file " + missing + " cannot be read");
        Path binary = Files.write(dir.resolve("binary.psk"), new byte[] {'a', ':', (byte) 0xff, (byte) 0xfe});
        assertThatThrownBy(() -> PskKeyFile.read(binary)).hasMessageContaining("is not UTF-8 text");
    }

    @Test
    void nbdTlsReadsTheKeyFileAtOnceAndOffIgnoresIt() throws IOException {
        Path bad = file("alice\n");
        assertThatThrownBy(() -> NbdTls.fromPskFile(NbdTls.Mode.REQUIRE, bad)).hasMessageContaining("line 1");
        assertThat(NbdTls.fromPskFile(NbdTls.Mode.OFF, bad)).isSameAs(NbdTls.OFF);
        NbdTls tls = NbdTls.fromPskFile(NbdTls.Mode.ON, file("alice:0011223344556677\n"));
        assertThat(tls.preSharedKeys()).isTrue();
        assertThat(tls.toString()).contains("pre-shared keys").contains("1 identities");
    }
}
