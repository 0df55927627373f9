package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.github.luben.zstd.Zstd;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.Map;
import java.util.Random;
import javax.crypto.Cipher;
import javax.crypto.KDF;
import javax.crypto.Mac;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.HKDFParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The encryption format as {@link CryptoDescriptor} documents it: known answers for the key
 * derivation and names (computed independently, with Python's RFC 5869 HKDF and hmac); a sealed
 * blob in a pack read back by a reader written from the diagram alone with plain JCE calls; every
 * seal is fresh; a flipped bit, another key or a renamed manifest does not open.
 */
class RepositoryKeyTest {
    @TempDir
    Path dir;

    /** A key file of the master key 00 01 02 .. 1f. */
    private Path fixedKeyFile() throws Exception {
        byte[] master = new byte[32];
        for (int i = 0; i < 32; i++) {
            master[i] = (byte) i;
        }
        Path f = dir.resolve("fixed.key");
        Files.writeString(f, "blksnap-repository-key\nversion 1\nkey " + HexFormat.of().formatHex(master) + "\n");
        return f;
    }

    @Test
    void namesAndTheKeyCheckHaveKnownAnswers() throws Exception {
        RepositoryKey key = RepositoryKey.load(fixedKeyFile());
        // python3: hkdf(bytes(range(32)), b'blksnap-repository', b'blksnap names v1'), then hmac sha256 of b'abc'
        assertThat(key.name("abc".getBytes(StandardCharsets.US_ASCII)).hex())
                .isEqualTo("fbd17bceae9df884a9c80e9b8acc2dadf446610b0fc0c379221711243dfdd315");
        assertThat(key.check("repo-1")).isEqualTo("7c12701929c5bce9ace4f6ce150251556e246871256da7a40194e495bb7d4aa8");
        assertThat(key.name("abc".getBytes(StandardCharsets.US_ASCII)))
                .as("not the plain SHA-256").isNotEqualTo(Sha256.of("abc".getBytes(StandardCharsets.US_ASCII)));
    }

    private static byte[] hkdf(byte[] master, String info) throws Exception {
        return KDF.getInstance("HKDF-SHA256").deriveData(HKDFParameterSpec.ofExtract().addIKM(master)
                .addSalt("blksnap-repository".getBytes(StandardCharsets.US_ASCII))
                .thenExpand(info.getBytes(StandardCharsets.US_ASCII), 32));
    }

    @Test
    void aSealedBlobReadsBackByTheDocumentedLayoutAlone() throws Exception {
        RepositoryKey key = RepositoryKey.load(fixedKeyFile());
        Files.createDirectories(dir.resolve("tmp"));
        DirectoryStore objects = new DirectoryStore(dir);
        byte[] random = new byte[65536];
        new Random(5).nextBytes(random);
        byte[] text = new byte[65536];
        byte[] line = "a line of text, compressible\n".getBytes(StandardCharsets.US_ASCII);
        for (int i = 0; i < text.length; i++) {
            text[i] = line[i % line.length];
        }
        Ref[] refs;
        try (ChunkStore store = new ChunkStore(objects, "t", Map.of(), 1 << 20, key)) {
            refs = new Ref[] {store.put(NodeDescriptor.KIND_CHUNK, store.name(random), random),
                store.put(NodeDescriptor.KIND_CHUNK, store.name(text), text)};
            store.seal();
        }
        byte[] pack = Files.readAllBytes(dir.resolve(RepositoryLayout.packKey(refs[0].pack())));
        assertThat(ByteBuffer.wrap(pack).getInt(8)).as("pack version").isEqualTo(2);

        byte[] master = new byte[32];
        for (int i = 0; i < 32; i++) {
            master[i] = (byte) i;
        }
        byte[] dataKey = hkdf(master, "blksnap data v1");
        byte[][] expected = {random, text};
        for (int i = 0; i < 2; i++) {
            ByteBuffer blob = ByteBuffer.wrap(pack, (int) refs[i].offsetBytes(), refs[i].lengthBytes()).slice();
            assertThat(blob.getInt(0)).isEqualTo(0x424c4f42);
            assertThat(blob.get(6)).as("sealed flag").isEqualTo((byte) 1);
            int comp = blob.get(5);
            int rawLength = blob.getInt(8);
            int storedLength = blob.getInt(12);
            assertThat(48 + storedLength).isEqualTo(refs[i].lengthBytes());
            byte[] header = new byte[48];
            blob.get(0, header);
            byte[] keyId = new byte[16];
            blob.get(48, keyId);
            byte[] nonce = new byte[12];
            blob.get(64, nonce);
            byte[] sealed = new byte[storedLength - 28];
            blob.get(76, sealed);
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(dataKey, "HmacSHA256"));
            Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
            c.init(Cipher.DECRYPT_MODE, new SecretKeySpec(mac.doFinal(keyId), "AES"), new GCMParameterSpec(128, nonce));
            c.updateAAD(header);
            byte[] plain = c.doFinal(sealed);
            byte[] raw = comp == 1 ? Zstd.decompress(plain, rawLength) : plain;
            assertThat(comp).as("random is stored raw, text compressed").isEqualTo(i);
            assertThat(raw).isEqualTo(expected[i]);
            assertThat(Arrays.copyOfRange(header, 16, 48)).as("the header's name").isEqualTo(refs[i].hash().bytes());
        }
        assertThat(new BlobReader(objects, key).read(refs[1])).isEqualTo(text);
        assertThatThrownBy(() -> new BlobReader(objects, null).read(refs[1])).isInstanceOf(RepositoryException.class)
                .hasMessageContaining("sealed (encrypted), in a repository that is not encrypted");
    }

    @Test
    void everySealIsFreshAndOpensOnlyUnderItsKeyWhole() throws Exception {
        RepositoryKey key = RepositoryKey.load(fixedKeyFile());
        RepositoryKey other = RepositoryKey.create(dir.resolve("other.key"));
        byte[] plain = "point manifest text".getBytes(StandardCharsets.US_ASCII);
        byte[] a = key.sealManifest("points/x.point", plain);
        byte[] b = key.sealManifest("points/x.point", plain);
        assertThat(a).isNotEqualTo(b);
        assertThat(key.openManifest("points/x.point", "x", a)).isEqualTo(plain);
        assertThatThrownBy(() -> key.openManifest("points/y.point", "y", a)).as("renamed")
                .isInstanceOfSatisfying(RepositoryException.class, e -> {
                    assertThat(e.code()).isEqualTo(RepositoryException.Code.DAMAGED);
                    assertThat(e.getMessage()).contains("manifest y does not authenticate");
                });
        assertThatThrownBy(() -> other.openManifest("points/x.point", "x", a)).as("another key")
                .isInstanceOf(RepositoryException.class);
        for (int at = 0; at < a.length; at += 7) {
            byte[] flipped = a.clone();
            flipped[at] ^= 0x04;
            assertThatThrownBy(() -> key.openManifest("points/x.point", "x", flipped)).as("bit flipped at %d", at)
                    .isInstanceOf(RepositoryException.class);
        }
    }
}
