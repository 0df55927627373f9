package org.blksnap.engine.scenario;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.Errno;
import org.blksnap.engine.SnapshotEvent;

/** Small I/O and engine helpers shared by the scenario tests. */
final class Io {
    static final long KiB = 1024;
    static final long MiB = 1024 * KiB;

    private Io() {
    }

    /**
     * What a writer loop on a virtual thread does between two requests, as a real NBD client's
     * connection does while it waits on its socket: it unmounts for a moment. Virtual threads are not
     * preempted; writer loops that never block keep every carrier busy, so a thread that a lock
     * handed off to (a take, a destroy, an image read waiting for a chunk) can wait forever for a
     * carrier (seen with one carrier). {@code Thread.yield} is not enough: it requeues the writer where
     * its carrier looks first. A timed park requeues it fairly.
     */
    static void pauseBetweenRequests() {
        java.util.concurrent.locks.LockSupport.parkNanos(20_000);
    }

    static byte[] read(BlockDevice d, long offsetBytes, int lengthBytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(lengthBytes);
        d.read(b, offsetBytes);
        return b.array();
    }

    static ByteBuffer readBuffer(BlockDevice d, long offsetBytes, int lengthBytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(lengthBytes);
        d.read(b, offsetBytes);
        return b.flip();
    }

    static void write(BlockDevice d, long offsetBytes, byte[] data) throws IOException {
        d.write(ByteBuffer.wrap(data), offsetBytes);
    }

    /** The errno of the BlksnapException thrown by {@code op}, or null if it did not throw one. */
    static Errno errnoOf(ThrowingRunnable op) {
        try {
            op.run();
        } catch (BlksnapException e) {
            return e.errno();
        } catch (Exception e) {
            throw new AssertionError("expected a BlksnapException, got " + e, e);
        }
        return null;
    }

    /** Takes every event queued now (waits at most 0 ms for each). */
    static List<SnapshotEvent> drainEvents(Blksnap engine, UUID id) {
        List<SnapshotEvent> out = new ArrayList<>();
        while (true) {
            try {
                out.add(engine.snapshotWaitEvent(id, 0));
            } catch (BlksnapException e) {
                if (e.errno() == Errno.ENOENT) {
                    return out;
                }
                throw e;
            }
        }
    }

    @FunctionalInterface
    interface ThrowingRunnable {
        void run() throws Exception;
    }
}
