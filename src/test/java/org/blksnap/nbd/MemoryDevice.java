package org.blksnap.nbd;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.BitSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.blksnap.engine.BlockDevice;

/**
 * An in-memory {@link BlockDevice} for protocol tests: sparse by 4 KiB block (written blocks are
 * "allocated", discarded or zeroed whole blocks become holes again), with knobs to make it fail,
 * stall or lack fast zeroing.
 */
final class MemoryDevice implements BlockDevice {
    static final int BLOCK = 4096;

    private final String name;
    private final byte[] data;
    private final BitSet allocated = new BitSet();
    volatile boolean fastZeroes = true;
    /** When set, every read and write throws it. */
    volatile RuntimeException failWith;
    volatile IOException ioFailure;
    /** When set, reads wait for it (to keep requests in flight), at most 30 s. */
    volatile CountDownLatch readGate;
    /** Reads waiting at {@link #readGate} now. */
    final AtomicInteger readsAtGate = new AtomicInteger();
    volatile int flushes;
    /** When > 0, every read and write sleeps a random time up to this many microseconds (forces out-of-order replies). */
    volatile int jitterMicros;

    MemoryDevice(String name, int sizeBytes) {
        this.name = name;
        this.data = new byte[sizeBytes];
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public long sizeBytes() {
        return data.length;
    }

    @Override
    public int logicalBlockSize() {
        return 512;
    }

    private void maybeFail() throws IOException {
        int jitter = jitterMicros;
        if (jitter > 0) {
            try {
                // A device's latency, so that replies overtake each other: not synchronization.
                Thread.sleep(java.time.Duration.ofNanos(1000L * java.util.concurrent.ThreadLocalRandom.current().nextInt(jitter)));
            } catch (InterruptedException e) {
                throw new IOException("interrupted", e);
            }
        }
        RuntimeException r = failWith;
        if (r != null) {
            throw r;
        }
        IOException e = ioFailure;
        if (e != null) {
            throw e;
        }
    }

    @Override
    public void read(ByteBuffer dst, long offsetBytes) throws IOException {
        CountDownLatch gate = readGate;
        if (gate != null) {
            readsAtGate.incrementAndGet();
            try {
                gate.await(30, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                throw new IOException("interrupted", e);
            } finally {
                readsAtGate.decrementAndGet();
            }
        }
        maybeFail();
        checkRange(offsetBytes, dst.remaining());
        synchronized (this) {
            dst.put(data, (int) offsetBytes, dst.remaining());
        }
    }

    @Override
    public void write(ByteBuffer src, long offsetBytes) throws IOException {
        maybeFail();
        checkRange(offsetBytes, src.remaining());
        synchronized (this) {
            int len = src.remaining();
            src.get(data, (int) offsetBytes, len);
            if (len > 0) {
                allocated.set((int) (offsetBytes / BLOCK), (int) ((offsetBytes + len - 1) / BLOCK) + 1);
            }
        }
    }

    @Override
    public void flush() {
        flushes++;
    }

    @Override
    public synchronized void discard(long offsetBytes, long lengthBytes) {
        zero(offsetBytes, lengthBytes, true);
    }

    @Override
    public boolean fastZeroes() {
        return fastZeroes;
    }

    @Override
    public synchronized void writeZeroes(long offsetBytes, long lengthBytes, boolean mayUnmap) {
        zero(offsetBytes, lengthBytes, mayUnmap);
    }

    private void zero(long offsetBytes, long lengthBytes, boolean unmap) {
        checkRange(offsetBytes, lengthBytes);
        java.util.Arrays.fill(data, (int) offsetBytes, (int) (offsetBytes + lengthBytes), (byte) 0);
        if (unmap) {
            long firstWhole = (offsetBytes + BLOCK - 1) / BLOCK;
            long endWhole = (offsetBytes + lengthBytes) / BLOCK;
            if (endWhole > firstWhole) {
                allocated.clear((int) firstWhole, (int) endWhole);
            }
        } else if (lengthBytes > 0) {
            allocated.set((int) (offsetBytes / BLOCK), (int) ((offsetBytes + lengthBytes - 1) / BLOCK) + 1);
        }
    }

    @Override
    public synchronized void mapAllocation(long offsetBytes, long lengthBytes, ExtentSink sink) {
        long end = Math.min(sizeBytes(), offsetBytes + lengthBytes);
        long pos = offsetBytes;
        while (pos < end) {
            int block = (int) (pos / BLOCK);
            boolean hole = !allocated.get(block);
            int next = hole ? allocated.nextSetBit(block) : allocated.nextClearBit(block);
            long extentEnd = next < 0 ? sizeBytes() : Math.min(sizeBytes(), (long) next * BLOCK);
            if (!sink.extent(extentEnd - pos, hole)) {
                return;
            }
            pos = extentEnd;
        }
    }

    synchronized byte[] contents(long offset, int length) {
        return java.util.Arrays.copyOfRange(data, (int) offset, (int) offset + length);
    }

    @Override
    public void close() {
    }
}
