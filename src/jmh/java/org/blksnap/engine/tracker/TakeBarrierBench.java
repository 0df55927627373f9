package org.blksnap.engine.tracker;

import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * {@link TakeBarrier#enter()} + {@link TakeBarrier#exit}: what every write of a tracked device pays
 * outside a take, alone and with two writers sharing the barrier's lock word.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class TakeBarrierBench {
    private final TakeBarrier barrier = new TakeBarrier();

    @Benchmark
    public long enterExit() {
        long s = barrier.enter();
        barrier.exit(s);
        return s;
    }

    @Benchmark
    @Threads(2)
    public long enterExit2Threads() {
        long s = barrier.enter();
        barrier.exit(s);
        return s;
    }
}
