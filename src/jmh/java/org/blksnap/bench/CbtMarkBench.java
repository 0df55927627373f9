package org.blksnap.bench;

import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.tracker.CbtMap;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * {@link CbtMap#mark}: the change-tracking cost every write pays. 4 KiB random marks (one block,
 * usually already at the active number: the store is skipped) and 1 MiB sequential marks.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class CbtMarkBench {
    @Param({"1073741824", "1099511627776"})
    public long deviceBytes;

    private CbtMap map;
    private long mask4k;
    private long seq;

    @Setup
    public void setup() {
        map = CbtMap.create("bench", deviceBytes, ParamValues.DEFAULTS);
        mask4k = (deviceBytes - 1) & ~4095L;
    }

    @Benchmark
    public boolean mark4kRandom() {
        return map.mark(ThreadLocalRandom.current().nextLong() & mask4k, 4096);
    }

    @Benchmark
    public boolean mark1mSequential() {
        long off = seq;
        seq = (off + (1 << 20)) & (deviceBytes - 1);
        return map.mark(off, 1 << 20);
    }

    /** Two writers at once: the write map is shared, so this shows cache-line contention. */
    @Benchmark
    @Threads(2)
    public boolean mark4kRandom2Threads() {
        return map.mark(ThreadLocalRandom.current().nextLong() & mask4k, 4096);
    }
}
