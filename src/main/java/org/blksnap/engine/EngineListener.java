package org.blksnap.engine;

/**
 * Notified when block devices appear or go away, so that a server can add and remove exports, and
 * of each copy-on-write, so that a daemon can measure it. Called on the thread that made the change,
 * after the change; implementations must be quick, must not throw, and must not call back into the
 * engine under their own locks.
 */
public interface EngineListener {
    /** A snapshot image became readable (at the end of a take). */
    default void imageCreated(ImageInfo image) {
    }

    /** A snapshot image is gone (destroy, or exit); I/O on it now fails with ENODEV. */
    default void imageRemoved(ImageInfo image) {
    }

    /**
     * An original device was removed from the engine: its tracker is detached and new I/O on it fails
     * with ENODEV, but its backing device is closed only after every listener returned, so a server
     * may wait here for the requests it has in flight on the device (they complete normally).
     */
    default void deviceRemoved(String deviceName) {
    }

    /**
     * A write to an original device stored the take-time content of one chunk in the difference
     * storage (copy-on-write), which the write waited for. Called on the writer's thread, after the
     * chunk is stored, with no engine lock held; failed copies are not reported here (they corrupt
     * the snapshot, with an event).
     *
     * @param device the original device written to
     * @param bytes  the chunk's size in bytes
     * @param nanos  how long reading it from the original and storing it took, in nanoseconds
     */
    default void chunkCopied(String device, int bytes, long nanos) {
    }
}
