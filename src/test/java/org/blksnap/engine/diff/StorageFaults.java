package org.blksnap.engine.diff;

import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.ConcurrentHashMap;
import org.blksnap.engine.testing.FaultPlan;

/**
 * Difference-storage faults on demand, for tests in any package: a {@link FaultPlan} per storage
 * file, keyed by its absolute normalised path (as {@link DiffStorage} opens it), consulted through the
 * engine's one seam for storage faults ({@code DiffIo.fault}). Storage files without a plan are
 * never touched, so tests that run at the same time in this JVM do not see each other's faults.
 *
 * <p>Thread-safe. A plan stays until {@link #forget}; call it when the test ends.
 */
public final class StorageFaults {
    private static final ConcurrentHashMap<Path, FaultPlan> PLANS = new ConcurrentHashMap<>();

    private StorageFaults() {
    }

    /** The plan of the storage file at {@code path} (an empty one, nothing failing, on first use). */
    public static FaultPlan of(Path path) {
        DiffIo.fault = StorageFaults::check;
        return PLANS.computeIfAbsent(key(path), p -> new FaultPlan(p.toString()));
    }

    /** Stops injecting faults into the storage file at {@code path}. */
    public static void forget(Path path) {
        PLANS.remove(key(path));
    }

    private static Path key(Path path) {
        return path.toAbsolutePath().normalize();
    }

    private static void check(DiffIo.Fault.Op op, Path path, long offsetBytes, long lengthBytes) throws IOException {
        FaultPlan plan = PLANS.get(path);
        if (plan != null) {
            plan.check(FaultPlan.Op.valueOf(op.name()), offsetBytes, lengthBytes);
        }
    }
}
