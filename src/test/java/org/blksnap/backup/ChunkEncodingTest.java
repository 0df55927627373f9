package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;

import com.github.luben.zstd.ZstdCompressCtx;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * How a chunk is stored: the probe that spares compressing incompressible data decides only what
 * zstd would have decided (random data raw, anything with a compressible sample compressed), and
 * every kind of chunk reads back bit for bit through {@link BlobReader}'s checks.
 */
class ChunkEncodingTest {
    private static final int CHUNK = 64 << 10;

    private static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    private static byte[] text(int n) {
        byte[] line = "the quick brown fox jumps over the lazy dog 0123456789\n".getBytes(StandardCharsets.US_ASCII);
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = line[i % line.length];
        }
        return b;
    }

    @Test
    void theProbeCallsRandomDataIncompressibleAndNothingWithACompressibleSample() {
        try (ZstdCompressCtx ctx = new ZstdCompressCtx().setLevel(ChunkStore.ZSTD_LEVEL)) {
            assertThat(ChunkStore.looksIncompressible(ctx, random(CHUNK, 1))).isTrue();
            assertThat(ChunkStore.looksIncompressible(ctx, text(CHUNK))).isFalse();
            assertThat(ChunkStore.looksIncompressible(ctx, new byte[CHUNK])).isFalse();
            // a file boundary inside the chunk: random first half, text second half (the end sample compresses)
            byte[] mixed = random(CHUNK, 2);
            System.arraycopy(text(CHUNK / 2), 0, mixed, CHUNK / 2, CHUNK / 2);
            assertThat(ChunkStore.looksIncompressible(ctx, mixed)).isFalse();
            // text only in the middle
            byte[] middle = random(CHUNK, 3);
            System.arraycopy(text(8192), 0, middle, CHUNK / 2 - 4096, 8192);
            assertThat(ChunkStore.looksIncompressible(ctx, middle)).isFalse();
            // short chunks are always tried
            assertThat(ChunkStore.looksIncompressible(ctx, random(4 * ChunkStore.PROBE_BYTES - 1, 4))).isFalse();
            // the probe leaves the context at the store's level
            assertThat(ChunkStore.looksIncompressible(ctx, random(CHUNK, 5))).isTrue();
        }
    }

    @Test
    void randomTextZeroMixedAndShortChunksReadBackBitForBit() throws Exception {
        byte[] mixed = random(CHUNK, 6);
        System.arraycopy(text(CHUNK / 2), 0, mixed, CHUNK / 2, CHUNK / 2);
        byte[][] chunks = {random(CHUNK, 7), text(CHUNK), new byte[CHUNK], mixed, random(1000, 8), text(100)};
        java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("blksnap-encoding");
        try (Repository repo = Repository.openForWriting(dir.resolve("repo"), 1 << 20, w -> { })) {
            ChunkStore store = repo.store();
            Ref[] refs = new Ref[chunks.length];
            for (int i = 0; i < chunks.length; i++) {
                refs[i] = store.put(NodeDescriptor.KIND_CHUNK, Sha256.of(chunks[i]), chunks[i]);
            }
            store.seal();
            for (int i = 0; i < chunks.length; i++) {
                assertThat(Arrays.equals(repo.reader().read(refs[i]), chunks[i])).as("chunk %d", i).isTrue();
            }
            // random data is stored raw (header + the bytes), text far smaller than itself
            assertThat(refs[0].lengthBytes()).isEqualTo(PackDescriptor.BLOB_HEADER_BYTES + CHUNK);
            assertThat(refs[1].lengthBytes()).isLessThan(CHUNK / 20);
            assertThat(refs[3].lengthBytes()).isLessThan(CHUNK * 3 / 4);
        } finally {
            org.blksnap.util.FileTrees.deleteRecursively(dir);
        }
    }
}
