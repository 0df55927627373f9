package org.blksnap.bench;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ThreadLocalRandom;
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
 * {@link DiffArea}: the per-write chunk lookup / done-bit test (a write to an already copied chunk)
 * and image reads of copied and not-copied chunks. The copy itself is {@link CowCopyBench}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class DiffAreaBench {
    static final int DEVICE_BYTES = 256 << 20;
    private static final Path DIR = Path.of(System.getProperty("bench.dir", "/dev/shm"));

    private MemDevice original;
    private Params params;
    private DiffStorage storage;
    private DiffArea area;
    private Path storagePath;
    private final ByteBuffer buf4k = ByteBuffer.allocateDirect(4096);

    private static final DiffArea.Owner OWNER = MemDevice.FAIL_ON_CORRUPTION;

    @Setup(Level.Trial)
    public void setupTrial() throws IOException {
        original = new MemDevice("orig", DEVICE_BYTES);
        params = new Params(ParamValues.DEFAULTS);
        storagePath = Files.createTempFile(DIR, "jmh-diff", ".img");
        Files.delete(storagePath);
        newArea();
    }

    private void newArea() {
        if (area != null) {
            area.close();
            storage.close();
        }
        try {
            Files.deleteIfExists(storagePath);
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
        storage = new DiffStorage("bench", new EventQueue("bench"), 4096, NativeIo.system());
        storage.append(StorageSpec.create(storagePath, DEVICE_BYTES + (16L << 20)), p -> false);
        area = new DiffArea("orig", original, params.values(), params, storage, OWNER);
        // the first half is copied, the second half is not
        for (long off = 0; off < DEVICE_BYTES / 2; off += area.chunkSizeBytes()) {
            area.copyOnWrite(off, 4096);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        area.close();
        storage.close();
        Files.deleteIfExists(storagePath);
    }

    /** The hot path of every write after its chunk was copied: chunk index + done bit. */
    @Benchmark
    public void cowAlreadyCopied4k() {
        long off = ThreadLocalRandom.current().nextLong(DEVICE_BYTES / 2) & ~4095L;
        area.copyOnWrite(off, 4096);
    }

    /** A 1 MiB write over four copied chunks. */
    @Benchmark
    public void cowAlreadyCopied1m() {
        long off = ThreadLocalRandom.current().nextLong(DEVICE_BYTES / 2 - (1 << 20)) & ~((1L << 20) - 1);
        area.copyOnWrite(off, 1 << 20);
    }

    /** 4 KiB image read of a chunk that was copied (served from the storage or the chunk cache). */
    @Benchmark
    public ByteBuffer imageRead4kCopied() throws IOException {
        long off = ThreadLocalRandom.current().nextLong(DEVICE_BYTES / 2) & ~4095L;
        buf4k.clear();
        area.imageRead(buf4k, off);
        return buf4k;
    }

    /** 4 KiB image read of a chunk never copied (served from the original). */
    @Benchmark
    public ByteBuffer imageRead4kNotCopied() throws IOException {
        long off = (DEVICE_BYTES - area.chunkSizeBytes()) & ~4095L;
        buf4k.clear();
        area.imageRead(buf4k, off);
        return buf4k;
    }
}
