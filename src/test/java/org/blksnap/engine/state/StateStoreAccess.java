package org.blksnap.engine.state;

import java.io.IOException;
import java.lang.reflect.Field;
import java.nio.file.Path;
import java.time.Duration;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Persistence;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.tracker.TrackedDevice;

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

    /** Attaches a new tracker to {@code d} in {@code store}: the device's state. */
    static DeviceState attachNew(StateStore store, TrackedDevice d) {
        d.setTracker(store.attachNew(d, ParamValues.DEFAULTS));
        return store.state(d.name());
    }
}
