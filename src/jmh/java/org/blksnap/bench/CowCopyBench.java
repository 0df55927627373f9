package org.blksnap.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Params;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.device.NativeIo;
import org.blksnap.engine.diff.DiffArea;
import org.blksnap.engine.diff.DiffStorage;
import org.blksnap.engine.event.EventQueue;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Copy-on-write of fresh chunks: each invocation copies the next never-copied 256 KiB chunk (read
 * from an in-memory original, region allocation, write to a storage file in /dev/shm). A batch of
 * {@value #CHUNKS} invocations copies the whole 256 MiB device once; the score is the time of one
 * batch, so MiB/s = 256 / score(s). A fresh diff area and storage are set up before each batch,
 * outside the measurement.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 5, batchSize = CowCopyBench.CHUNKS)
@Measurement(iterations = 10, batchSize = CowCopyBench.CHUNKS)
@Fork(1)
public class CowCopyBench {
    static final int CHUNKS = 1024;
    private static final int DEVICE_BYTES = CHUNKS << 18;
    private static final Path DIR = Path.of(System.getProperty("bench.dir", "/dev/shm"));

    private MemDevice original;
    private Params params;
    private DiffStorage storage;
    private DiffArea area;
    private Path storagePath;
    private long next;

    private static final DiffArea.Owner OWNER = MemDevice.FAIL_ON_CORRUPTION;

    @Setup(Level.Trial)
    public void setupTrial() throws IOException {
        original = new MemDevice("orig", DEVICE_BYTES);
        params = new Params(ParamValues.DEFAULTS);
        storagePath = Files.createTempFile(DIR, "jmh-cow", ".img");
    }

    @Setup(Level.Iteration)
    public void freshArea() throws IOException {
        Files.deleteIfExists(storagePath);
        storage = new DiffStorage("bench", new EventQueue("bench"), 4096, NativeIo.system());
        storage.append(StorageSpec.create(storagePath, DEVICE_BYTES + (16L << 20)), p -> false);
        area = new DiffArea("orig", original, params.values(), params, storage, OWNER);
        next = 0;
    }

    @TearDown(Level.Iteration)
    public void closeArea() {
        area.close();
        storage.close();
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        Files.deleteIfExists(storagePath);
    }

    @Benchmark
    public void copyFreshChunk() {
        area.copyOnWrite((next++ % CHUNKS) << 18, 4096);
    }
}
