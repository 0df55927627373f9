package org.blksnap.backup;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.blksnap.nbd.FileExportServer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The backup's NBD client against the project's server: many requests in flight from many threads, and its errors. */
class NbdClientTest {
    static final long SIZE = 16L << 20;
    static final int BLOCK = 4096;

    @TempDir
    Path dir;

    @Test
    void readsFromManyThreadsAtOnceEachGetTheirOwnBytes() throws Exception {
        try (FileExportServer server = new FileExportServer(dir, SIZE, "d");
             NbdClient client = NbdClient.connect(server.uri("d"))) {
            assertThat(client.sizeBytes()).isEqualTo(SIZE);
            // every 4 KiB block holds its own index in every int: a reply given to the wrong request shows
            ByteBuffer all = ByteBuffer.allocate(1 << 20);
            for (long off = 0; off < SIZE; off += all.capacity()) {
                all.clear();
                for (int i = 0; i < all.capacity() / 4; i++) {
                    all.putInt((int) ((off + i * 4L) / BLOCK));
                }
                client.write(off, all.flip());
            }
            CountDownLatch go = new CountDownLatch(1);
            List<Future<Integer>> results = new ArrayList<>();
            try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
                for (int t = 0; t < 32; t++) {
                    int seed = t;
                    results.add(pool.submit(() -> {
                        go.await();
                        Random r = new Random(seed);
                        int checked = 0;
                        for (int k = 0; k < 100; k++) {
                            int first = r.nextInt((int) (SIZE / BLOCK) - 16);
                            int blocks = 1 + r.nextInt(16);
                            ByteBuffer buf = ByteBuffer.allocate(blocks * BLOCK);
                            client.read((long) first * BLOCK, buf);
                            buf.flip();
                            for (int i = 0; i < buf.limit() / 4; i++) {
                                int expected = first + i * 4 / BLOCK;
                                if (buf.getInt() != expected) {
                                    throw new AssertionError("block " + expected + " read wrong bytes");
                                }
                            }
                            checked++;
                        }
                        return checked;
                    }));
                }
                go.countDown();
                for (Future<Integer> f : results) {
                    assertThat(f.get()).isEqualTo(100);
                }
            }
        }
    }

    @Test
    void anUnknownExportAReadPastTheEndAndANonNbdUriAreNbdErrorsNamingThem() throws Exception {
        try (FileExportServer server = new FileExportServer(dir, SIZE, "d")) {
            String missing = server.uri("nope");
            assertThatThrownBy(() -> NbdClient.connect(missing)).isInstanceOfSatisfying(RepositoryException.class, e -> {
                assertThat(e.code()).isEqualTo(RepositoryException.Code.NBD);
                assertThat(e.getMessage()).contains("refused export 'nope'");
            });
            try (NbdClient client = NbdClient.connect(server.uri("d"))) {
                assertThatThrownBy(() -> client.read(SIZE - 512, ByteBuffer.allocate(4096)))
                        .isInstanceOfSatisfying(RepositoryException.class, e -> {
                            assertThat(e.code()).isEqualTo(RepositoryException.Code.NBD);
                            assertThat(e.getMessage()).contains("read of 4096 bytes at offset " + (SIZE - 512))
                                    .contains("the server answered error");
                        });
                ByteBuffer ok = ByteBuffer.allocate(512);
                client.read(SIZE - 512, ok);
                assertThat(ok.hasRemaining()).as("the connection survives an error reply").isFalse();
            }
        }
        assertThatThrownBy(() -> NbdClient.connect("http://x/y")).isInstanceOfSatisfying(RepositoryException.class,
                e -> assertThat(e.getMessage()).contains("is not an nbd:// or nbd+unix:// URI"));
        assertThatThrownBy(() -> NbdClient.connect("nbd+unix:///d?socket=" + dir.resolve("no.sock")))
                .isInstanceOfSatisfying(RepositoryException.class, e -> assertThat(e.getMessage()).contains("cannot connect"));
    }
}
