package org.blksnap.engine.module;

import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Params;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

class ParamsTest {

    @Test
    void defaultsAreTheKernelModulesWithTheirNames() {
        assertThat(new Params().asMap()).containsExactly(
                java.util.Map.entry("tracking_block_minimum_shift", 16L),
                java.util.Map.entry("tracking_block_maximum_count", 2_097_152L),
                java.util.Map.entry("chunk_minimum_shift", 18L),
                java.util.Map.entry("chunk_maximum_count", 2_097_152L),
                java.util.Map.entry("chunk_maximum_in_cache", 32L),
                java.util.Map.entry("free_diff_buffer_pool_size", 128L),
                java.util.Map.entry("diff_storage_minimum", 2_097_152L));
    }

    @Test
    void aValueOutOfRangeIsRefusedNamingParameterValueAndRangeAndNothingChanges() {
        Params p = new Params();
        assertThatThrownBy(() -> p.set("chunk_minimum_shift", 8))
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.EINVAL))
                .hasMessageContaining("chunk_minimum_shift (8) must be >= 12 and <= 26");
        assertThat(p.get("chunk_minimum_shift")).isEqualTo(18);
        assertThatThrownBy(() -> p.set("chunk_maximum_count", 0)).hasMessageContaining("chunk_maximum_count (0) must be >= 1");
    }

    @Test
    void unknownNamesAndMalformedAssignmentsAreRefused() {
        Params p = new Params();
        assertThatThrownBy(() -> p.set("chunk_size", 1)).hasMessageContaining("unknown parameter 'chunk_size'")
                .hasMessageContaining("diff_storage_minimum");
        assertThatThrownBy(() -> p.set("chunk_minimum_shift")).hasMessageContaining("NAME=VALUE");
        assertThatThrownBy(() -> p.set("chunk_minimum_shift=abc")).hasMessageContaining("not a whole number");
    }

    @Test
    void diffStorageMinimumMustHoldTwoChunksWhicheverIsChanged() {
        Params p = new Params();
        assertThatThrownBy(() -> p.set("diff_storage_minimum", 1023))
                .hasMessageContaining("smaller than two chunks").hasMessageContaining("1024 sectors");
        p.set("diff_storage_minimum", 1024);
        assertThatThrownBy(() -> p.set("chunk_minimum_shift", 19)).hasMessageContaining("chunk_minimum_shift (19)");
        assertThat(p.get("chunk_minimum_shift")).isEqualTo(18);
    }

    @Test
    void runTimeChangesAreSeenWholeByConcurrentReaders() throws Exception {
        Params p = new Params();
        p.set("diff_storage_minimum", 1 << 20);
        AtomicReference<String> bad = new AtomicReference<>();
        CountDownLatch done = new CountDownLatch(1);
        Thread reader = Thread.ofVirtual().start(() -> {
            while (done.getCount() > 0) {
                ParamValues v = p.values();
                if (v.diffStorageMinimum() < 2 * v.chunkMinimumSectors()) {
                    bad.set("saw " + v);
                }
            }
        });
        for (int i = 0; i < 20_000; i++) {
            p.set("chunk_minimum_shift", 12 + (i % 8));
        }
        done.countDown();
        reader.join();
        assertThat(bad.get()).isNull();
        assertThat(List.of(12L, 13L, 14L, 15L, 16L, 17L, 18L, 19L)).contains(p.get("chunk_minimum_shift"));
    }
}
