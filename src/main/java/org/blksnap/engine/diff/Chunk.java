package org.blksnap.engine.diff;

import java.nio.ByteBuffer;
import java.util.concurrent.locks.ReentrantLock;

/**
 * One chunk of a diff area: the copy-on-write unit (the kernel's {@code struct chunk}). Exists only
 * once the chunk has been copied, is being copied, or was written or read through the image after a
 * copy.
 *
 * <p>All fields but {@link #index} are guarded by {@link #lock}: a copy-on-write, an image read and an
 * image write of the same chunk are serialised by it, and each chunk is copied at most once. The
 * state only moves forward: {@code NEW → STORED} or {@code NEW → FAILED}, and a STORED chunk keeps its
 * region, so an image send that saw it STORED under the lock may hand the region after releasing it
 * ({@link ImageIo#send}).
 */
final class Chunk {
    /** Where the chunk's snapshot content is. */
    enum State {
        /** Nothing stored: the take-time content is still on the original. */
        NEW,
        /** The region holds the chunk's snapshot content (take-time data, plus any image writes). */
        STORED,
        /** Copying failed; the snapshot is corrupted. */
        FAILED
    }

    final long index;
    final ReentrantLock lock = new ReentrantLock();
    State state = State.NEW;
    Region region;
    /** The chunk's snapshot content while cached, else null. */
    ByteBuffer buffer;

    Chunk(long index) {
        this.index = index;
    }
}
