package org.blksnap.engine.module;

import org.blksnap.engine.Blksnap;
import org.blksnap.engine.Params;
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
        return new BlksnapEngine(params, NativeIo.system(), null);
    }
}
