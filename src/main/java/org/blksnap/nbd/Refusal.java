package org.blksnap.nbd;

import static org.blksnap.nbd.NbdHandshakeDescriptor.*;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.time.Duration;

/**
 * Turns a client away the way the protocol asks of a server that does not want it ("simply error
 * inbound options until the client gets the hint that it is unwelcome"): the greeting, then every
 * option is answered {@code NBD_REP_ERR_POLICY} with a message saying why, {@code NBD_OPT_ABORT}
 * with an ACK, and {@code NBD_OPT_EXPORT_NAME}, which has no error reply, with a hard disconnect.
 * A client that keeps going past {@link #MAX_OPTIONS} options or {@link #DEADLINE} is cut off
 * (the hard disconnect the protocol allows against denial of service). So clients report a refusal
 * instead of a dropped connection: qemu-img prints the reason ("server reported: too many
 * connections to this server ..."), nbdinfo 1.14 that the server refused GO.
 *
 * <p>Uses a few hundred bytes of heap and no native memory; runs on its own virtual thread, which
 * always closes the channel. Not thread-safe (one per refused connection).
 */
final class Refusal implements Runnable {
    /** Options answered before the connection is cut. */
    static final int MAX_OPTIONS = 16;
    /** How long a refused client may take before the connection is cut. */
    static final Duration DEADLINE = Duration.ofSeconds(10);

    private final NbdChannel channel;
    private final String reason;
    private final Runnable ended;

    /**
     * @param reason the message of every error reply, e.g. "too many connections (256); try again later"
     * @param ended  called once when the refusal is over and the channel closed
     */
    Refusal(NbdChannel channel, String reason, Runnable ended) {
        this.channel = channel;
        this.reason = reason;
        this.ended = ended;
    }

    @Override
    public void run() {
        Thread watchdog = Thread.ofVirtual().start(() -> {
            try {
                Thread.sleep(DEADLINE);
                channel.close();
            } catch (InterruptedException | IOException e) {
                // ended in time, or already closed
            }
        });
        try {
            refuse();
        } catch (IOException | RuntimeException e) {
            // The client went away or broke the protocol: it is refused either way.
        } finally {
            watchdog.interrupt();
            try {
                channel.close();
            } catch (IOException e) {
                // nothing left to do
            }
            ended.run();
        }
    }

    private void refuse() throws IOException {
        NbdInput in = new NbdInput(channel, ByteBuffer.allocate(256));
        ReplyWriter out = new ReplyWriter(channel, ByteBuffer.allocate(64));
        out.raw(Handshake.greeting());
        int clientFlags = in.readInt();
        if ((clientFlags & ~CLIENT_FLAGS_KNOWN) != 0) {
            return;
        }
        byte[] message = ReplyWriter.truncateUtf8(reason, MAX_STRING_BYTES);
        for (int count = 0; count < MAX_OPTIONS; count++) {
            ByteBuffer h = in.require(OPTION_HEADER_LENGTH);
            int p = h.position();
            long magic = h.getLong(p + OPTION_MAGIC_OFFSET);
            int option = h.getInt(p + OPTION_CODE_OFFSET);
            long length = Integer.toUnsignedLong(h.getInt(p + OPTION_LENGTH_OFFSET));
            h.position(p + OPTION_HEADER_LENGTH);
            if (magic != IHAVEOPT || option == OPT_EXPORT_NAME || length > MAX_SKIPPABLE_OPTION_BYTES) {
                return;
            }
            in.skip(length);
            if (option == OPT_ABORT) {
                out.optionReply(option, REP_ACK);
                return;
            }
            out.optionReply(option, REP_ERR_POLICY, ByteBuffer.wrap(message));
        }
    }
}
