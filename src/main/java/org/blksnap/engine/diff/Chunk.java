package org.blksnap.engine.diff;

import java.nio.ByteBuffer;
import java.util.concurrent.locks.ReentrantLock;

/**
 * One chunk of a diff area: the copy-on-write unit. Exists only once the chunk has been copied, is
 * being copied, or was written or read through the image after a copy.
 *
 * <p>All fields are guarded by {@link #lock}: a copy-on-write, an image read and an image write of
 * the same chunk are serialised by it, and each chunk is copied at most once.
 */
final class Chunk {
    /** Nothing stored: the take-time content is still on the original. */
    static final int NEW = 0;
    /** The region holds the chunk's snapshot content (take-time data, plus any image writes). */
    static final int STORED = 1;
    /** Copying failed; the snapshot is corrupted. */
    static final int FAILED = 2;

    final long index;
    final ReentrantLock lock = new ReentrantLock();
    int state = NEW;
    Region region;
    /** The chunk's snapshot content while cached, else null. */
    ByteBuffer buffer;

    Chunk(long index) {
        this.index = index;
    }
}
