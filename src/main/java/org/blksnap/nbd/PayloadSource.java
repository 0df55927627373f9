package org.blksnap.nbd;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.blksnap.engine.BlockDevice;

/**
 * A WRITE's payload still in the connection's stream, handed to a device's
 * {@link BlockDevice.Receiver} so that it reads the bytes straight into its own memory. Counts what
 * was taken, so that after a device failure the rest can be skipped and the stream stays in step;
 * remembers a failure of the stream itself, after which nothing more may be read (how much of the
 * payload the failed read took is unknown: the connection must end).
 *
 * <p>Not thread-safe: one request, on the connection's reader thread.
 */
final class PayloadSource implements BlockDevice.ByteSource {

    /** The stream failed under a payload: the connection cannot go on. */
    static final class LostException extends IOException {
        LostException(Throwable cause) {
            super("the stream failed inside a WRITE payload: " + cause.getMessage(), cause);
        }
    }

    private final NbdInput in;
    private final Runnable owed;
    private long remainingBytes;
    private LostException lost;

    /**
     * @param in           the stream, positioned at the payload
     * @param lengthBytes  the payload's length
     * @param owed         run before the stream is read: the client owes the bytes from then on
     */
    PayloadSource(NbdInput in, long lengthBytes, Runnable owed) {
        this.in = in;
        this.remainingBytes = lengthBytes;
        this.owed = owed;
    }

    @Override
    public void readFully(ByteBuffer dst) throws IOException {
        int n = dst.remaining();
        if (lost != null) {
            throw lost;
        }
        if (n > remainingBytes) {
            throw new IllegalStateException("the device asked for " + n + " bytes; the payload has " + remainingBytes
                    + " left");
        }
        owed.run();
        try {
            in.readFully(dst);
        } catch (IOException | RuntimeException e) {
            throw lose(e);
        }
        remainingBytes -= n;
    }

    /** Reads past what the device did not take (all of it when it failed first); nothing after a loss. */
    void skipRest() throws LostException {
        if (lost != null || remainingBytes == 0) {
            return;
        }
        owed.run();
        try {
            in.skip(remainingBytes);
        } catch (IOException | RuntimeException e) {
            throw lose(e);
        }
        remainingBytes = 0;
    }

    /** Remembers that the stream failed, for {@link #throwIfLost} and every later call. */
    private LostException lose(Exception cause) {
        lost = new LostException(cause);
        return lost;
    }

    /**
     * Throws the stream's failure, if there was one, as the stream threw it (an end of stream stays
     * an {@link java.io.EOFException}: the client left).
     */
    void throwIfLost() throws IOException {
        if (lost != null) {
            if (lost.getCause() instanceof IOException e) {
                throw e;
            }
            throw lost;
        }
    }
}
