package org.blksnap.engine.diff;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * One "done" bit per chunk of a diff area: set once the chunk's take-time content no longer needs
 * copying (it was stored, or its copy failed). Bits are only ever set, never cleared.
 *
 * <p>Thread-safe and lock-free. {@link #markDone} sets a bit with a volatile compare-and-set, so no
 * bit set concurrently in the same word is lost; {@link #isDone} reads with acquire semantics, so a
 * thread that sees a bit set also sees every write the setter made before setting it (the chunk's
 * state and region). Forbidden outcomes (tested): a set bit that reads clear later; a set bit seen
 * without the writes that preceded it.
 */
final class DoneBitmap {
    private static final VarHandle WORDS = MethodHandles.arrayElementVarHandle(long[].class);

    private final long chunkCount;
    private final long[] words;

    /** @param chunkCount bits, in chunks; at most 2^37 (words are addressed by an int) */
    DoneBitmap(long chunkCount) {
        if (chunkCount < 0 || (chunkCount + 63) >>> 6 > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("chunkCount (" + chunkCount + ") must be >= 0 and < 2^37");
        }
        this.chunkCount = chunkCount;
        this.words = new long[(int) ((chunkCount + 63) >>> 6)];
    }

    /** Bits in the map, in chunks. */
    long chunkCount() {
        return chunkCount;
    }

    /** Whether chunk {@code index} is done; acquire read. */
    boolean isDone(long index) {
        long word = (long) WORDS.getAcquire(words, wordOf(index));
        return (word & bitOf(index)) != 0;
    }

    /** Sets the bit of chunk {@code index}; everything this thread wrote before is visible to whoever sees it. */
    void markDone(long index) {
        int w = wordOf(index);
        long bit = bitOf(index);
        long old;
        do {
            old = (long) WORDS.getVolatile(words, w);
            if ((old & bit) != 0) {
                return;
            }
        } while (!WORDS.compareAndSet(words, w, old, old | bit));
    }

    private static int wordOf(long index) {
        return (int) (index >>> 6);
    }

    private static long bitOf(long index) {
        return 1L << index; // the shift uses the low six bits: the bit inside the word
    }
}
