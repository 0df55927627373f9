package org.blksnap.engine.module;

import org.blksnap.engine.Blksnap;
import org.blksnap.engine.Params;
import org.blksnap.engine.Persistence;
import org.blksnap.engine.device.NativeIo;

/**
 * Loads the engine: the {@code modprobe blksnap} of this library. The only public type of the
 * implementation package; everything else a caller needs is in {@code org.blksnap.engine}.
 */
public final class BlksnapModule {
    private BlksnapModule() {
    }

    /**
     * Brings the engine up in the module's order (diff I/O, images, trackers, control, status); if a
     * step fails, the steps already up are undone before the exception is thrown.
     *
     * @param params the live parameters; the engine reads them when trackers and snapshots are created
     * @return the engine, thread-safe; close it to unload
     * @throws org.blksnap.engine.BlksnapException ENOMEM or EFAULT if an init step failed (nothing stays up)
     */
    public static Blksnap init(Params params) {
        return init(params, Persistence.NONE);
    }

    /**
     * As {@link #init(Params)}, with change tracking kept in {@code persistence}'s directory: trackers
     * are restored when their devices are added, checkpointed and journaled while they run, and saved
     * at {@link Blksnap#close()} (docs/persistence.md). At init, difference-storage files the engine
     * created for snapshots of a run that did not stop cleanly are removed.
     *
     * @throws org.blksnap.engine.BlksnapException EIO if the state directory cannot be opened (nothing stays up)
     */
    public static Blksnap init(Params params, Persistence persistence) {
        return new BlksnapEngine(params, persistence, NativeIo.system(), null);
    }
}
