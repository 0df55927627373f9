package org.blksnap.agent;

import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * One output stream of an agent job (stdout or stderr): bytes written by the job, kept until a wait
 * takes them. Text is UTF-8 and handed out in whole characters only (a character cut between two
 * writes waits for its rest); at most {@link #MAX_KEPT_BYTES} wait for a reader, more is dropped
 * and the drop is said in the text taken next. Every write signals {@code changed}.
 *
 * <p>Thread-safe: writers and the taker hold the job's {@code lock} (shared with its other output
 * and its end, so one wait sees all three consistently).
 */
final class JobOutput extends OutputStream {
    /** Output bytes kept between two takes, per stream. */
    static final int MAX_KEPT_BYTES = 4 << 20;

    private final ReentrantLock lock;
    private final Condition changed;
    // guarded by lock
    private byte[] buf = new byte[256];
    private int size;
    private boolean dropped;

    JobOutput(ReentrantLock lock, Condition changed) {
        this.lock = lock;
        this.changed = changed;
    }

    @Override
    public void write(int b) {
        append(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public void write(byte[] b, int off, int len) {
        append(b, off, len);
    }

    /** Keeps {@code len} bytes of {@code b} from {@code off} (or drops them when too much waits already). */
    void append(byte[] b, int off, int len) {
        lock.lock();
        try {
            if (size + len > MAX_KEPT_BYTES) {
                dropped = true;
                return;
            }
            if (size + len > buf.length) {
                buf = Arrays.copyOf(buf, Math.max(buf.length * 2, size + len));
            }
            System.arraycopy(b, off, buf, size, len);
            size += len;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Whether nothing waits to be taken. Caller holds the lock. */
    boolean isEmpty() {
        return size == 0 && !dropped;
    }

    /** The whole characters kept, or null when there are none. Caller holds the lock. */
    String take() {
        int n = wholeCharacters();
        if (n == 0 && !dropped) {
            return null;
        }
        String s = new String(buf, 0, n, StandardCharsets.UTF_8);
        System.arraycopy(buf, n, buf, 0, size - n);
        size -= n;
        if (dropped) {
            dropped = false;
            s += "\n[blksnap agent: output beyond " + MAX_KEPT_BYTES + " bytes between two waits was dropped]\n";
        }
        return s;
    }

    /** Bytes from the start that end on a character boundary. */
    private int wholeCharacters() {
        for (int back = 1; back <= Math.min(3, size); back++) {
            int b = buf[size - back] & 0xff;
            if (b < 0x80) {
                return size; // ASCII: the end is a boundary
            }
            if (b >= 0xc0) { // the lead byte of the last character
                int need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
                return back < need ? size - back : size;
            }
        }
        return size;
    }
}
