package org.blksnap.engine.state;

import java.lang.reflect.Field;
import org.blksnap.engine.Blksnap;

/** Test access to an engine's per-device state (the engine's fields are private to its package). */
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
}
