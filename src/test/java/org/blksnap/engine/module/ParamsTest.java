package org.blksnap.engine.module;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CyclicBarrier;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Params;
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
    void unknownNamesAreRefusedNamingTheKnownOnes() {
        Params p = new Params();
        assertThatThrownBy(() -> p.set("chunk_size", 1)).hasMessageContaining("unknown parameter 'chunk_size'")
                .hasMessageContaining("diff_storage_minimum");
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

    /**
     * A change is a read-modify-write of the whole parameter set: two threads changing different
     * parameters at once must not undo each other, as a get-then-set would. (Readers cannot see half
     * a change: each set is one immutable {@link ParamValues}.)
     */
    @Test
    void concurrentChangesOfDifferentParametersAreNeverLost() throws Exception {
        Params p = new Params();
        List<String> names = List.of("tracking_block_maximum_count", "chunk_maximum_count", "chunk_maximum_in_cache",
                "free_diff_buffer_pool_size");
        int changes = 20_000;
        CyclicBarrier start = new CyclicBarrier(names.size());
        Queue<String> lost = new ConcurrentLinkedQueue<>();
        List<Thread> setters = new ArrayList<>();
        for (String name : names) {
            setters.add(Thread.ofPlatform().start(() -> {
                try {
                    start.await();
                } catch (Exception e) {
                    lost.add(name + ": " + e);
                    return;
                }
                for (int v = 1; v <= changes; v++) {
                    p.set(name, v);
                    long now = p.get(name);
                    if (now != v) {
                        lost.add(name + " set to " + v + " reads " + now);
                    }
                }
            }));
        }
        for (Thread t : setters) {
            assertThat(t.join(Duration.ofSeconds(60))).isTrue();
        }
        assertThat(lost).as("changes undone by another thread's change").isEmpty();
        for (String name : names) {
            assertThat(p.get(name)).as(name).isEqualTo(changes);
        }
    }
}
