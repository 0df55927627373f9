package org.blksnap.engine.state;

import java.io.IOException;
import java.lang.reflect.Field;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Persistence;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.tracker.TrackedDevice;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Test access to an engine's per-device state (the engine's fields are private to its package), and
 * a state store with devices of its own for tests of the journal without an engine.
 */
final class StateStoreAccess {
    private StateStoreAccess() {
    }

    static StateStore store(Blksnap engine) {
        try {
            Field f = engine.getClass().getDeclaredField("state");
            f.setAccessible(true);
            return (StateStore) f.get(engine);
        } catch (ReflectiveOperationException e) {
            throw new AssertionError(e);
        }
    }

    static DeviceState state(Blksnap engine, String device) {
        return store(engine).state(device);
    }

    /** A store on {@code state} with journal regions of {@code regionBytes}; no periodic checkpoint falls in a test. */
    static StateStore open(Path state, long regionBytes) throws IOException {
        return StateStore.open(new Persistence(state, regionBytes, Duration.ofHours(1)));
    }

    /** Device {@code name} of {@code sizeBytes} on the sparse file {@code dir/<name>.img}, no tracker yet. */
    static TrackedDevice device(Path dir, String name, long sizeBytes) throws IOException {
        return new TrackedDevice(name, BlockDevices.open(dir.resolve(name + ".img"), sizeBytes, false));
    }

    /**
     * What a kill -9 leaves of the state directory {@code state} of {@code engine} at this moment: a
     * copy of it in a new directory under {@code dir}, once the checkpoints the engine writes in the
     * background after a take are durable (the test holds the engine otherwise quiescent; a copy
     * made file by file while a checkpoint lands and its idle journal is emptied could pair the old
     * checkpoint with the emptied journal, which no crash can leave).
     */
    static Path crashCopy(Path dir, Blksnap engine, Path state) throws IOException {
        store(engine).awaitBackground();
        Path copy = dir.resolve("crash-" + UUID.randomUUID());
        try (var walk = Files.walk(state)) {
            for (Path p : (Iterable<Path>) walk::iterator) {
                Files.copy(p, copy.resolve(state.relativize(p).toString()), StandardCopyOption.COPY_ATTRIBUTES);
            }
        }
        return copy;
    }

    /** Engines a test opened, closed after it whatever happened (a field with {@code @RegisterExtension}). */
    static final class Engines implements AfterEachCallback {
        private final List<Blksnap> open = new ArrayList<>();

        Blksnap add(Blksnap e) {
            open.add(e);
            return e;
        }

        @Override
        public void afterEach(ExtensionContext context) {
            for (Blksnap e : open) {
                try {
                    e.close();
                } catch (RuntimeException ignored) {
                    // closed by the test already
                }
            }
        }
    }

    /** Attaches a new tracker to {@code d} in {@code store}: the device's state. */
    static DeviceState attachNew(StateStore store, TrackedDevice d) {
        d.setTracker(store.attachNew(d, ParamValues.DEFAULTS));
        return store.state(d.name());
    }
}
