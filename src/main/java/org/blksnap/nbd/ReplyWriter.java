package org.blksnap.nbd;

import static org.blksnap.nbd.NbdHandshakeDescriptor.OPTION_REPLY_MAGIC;
import static org.blksnap.nbd.NbdHandshakeDescriptor.REPLY_HEADER_LENGTH;
import static org.blksnap.nbd.NbdHandshakeDescriptor.REPLY_LENGTH_OFFSET;
import static org.blksnap.nbd.NbdHandshakeDescriptor.REPLY_MAGIC_OFFSET;
import static org.blksnap.nbd.NbdHandshakeDescriptor.REPLY_OPTION_OFFSET;
import static org.blksnap.nbd.NbdHandshakeDescriptor.REPLY_TYPE_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.CHUNK_COOKIE_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.CHUNK_FLAGS_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.CHUNK_HEADER_LENGTH;
import static org.blksnap.nbd.NbdTransmissionDescriptor.CHUNK_LENGTH_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.CHUNK_MAGIC_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.CHUNK_TYPE_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.DATA_OFFSET_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.DATA_PAYLOAD_HEADER_LENGTH;
import static org.blksnap.nbd.NbdTransmissionDescriptor.ERROR_CODE_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.ERROR_MESSAGE_LENGTH_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.EIO;
import static org.blksnap.nbd.NbdTransmissionDescriptor.ERROR_MESSAGE_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.ERROR_OFFSET_OFFSET_LENGTH;
import static org.blksnap.nbd.NbdTransmissionDescriptor.HOLE_OFFSET_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.HOLE_PAYLOAD_LENGTH;
import static org.blksnap.nbd.NbdTransmissionDescriptor.HOLE_SIZE_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.MAX_ERROR_MESSAGE_BYTES;
import static org.blksnap.nbd.NbdTransmissionDescriptor.REPLY_FLAG_DONE;
import static org.blksnap.nbd.NbdTransmissionDescriptor.REPLY_TYPE_BLOCK_STATUS;
import static org.blksnap.nbd.NbdTransmissionDescriptor.REPLY_TYPE_ERROR;
import static org.blksnap.nbd.NbdTransmissionDescriptor.REPLY_TYPE_ERROR_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.REPLY_TYPE_NONE;
import static org.blksnap.nbd.NbdTransmissionDescriptor.REPLY_TYPE_OFFSET_DATA;
import static org.blksnap.nbd.NbdTransmissionDescriptor.REPLY_TYPE_OFFSET_HOLE;
import static org.blksnap.nbd.NbdTransmissionDescriptor.SIMPLE_COOKIE_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.SIMPLE_ERROR_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.SIMPLE_MAGIC_OFFSET;
import static org.blksnap.nbd.NbdTransmissionDescriptor.SIMPLE_REPLY_LENGTH;
import static org.blksnap.nbd.NbdTransmissionDescriptor.SIMPLE_REPLY_MAGIC;
import static org.blksnap.nbd.NbdTransmissionDescriptor.STRUCTURED_REPLY_MAGIC;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Writes whole messages (option replies, simple replies, all chunks of a structured reply) to a
 * connection, one at a time: a message is assembled as headers in a connection-owned direct
 * buffer plus the caller's payload buffers, and leaves in one gathering write under a lock, so
 * replies of concurrent requests never interleave. Once a write fails the stream may hold a
 * partial message, so every later write fails fast. Thread-safe.
 *
 * <p>Replies produced on the connection's reader thread (requests executed inline) are batched:
 * small messages are copied into a batch buffer instead of being written, and the reader calls
 * {@link #flushBatch()} before it blocks for more input. With pipelined requests this turns one
 * write syscall per reply into one per burst. Any other thread that writes sends the pending
 * batch first, in the same gathering write.
 *
 * <p>The header area and the batch belong to the connection ({@link ConnectionMemory}); after
 * {@link #close()} they are never touched again, so the connection can free them even while a
 * request thread that outlived it still tries to reply (it gets an {@code IOException}).
 */
final class ReplyWriter {
    static final int HEADER_AREA_BYTES = 8192;
    /** Most buffers in one message: {@link ReadRuns#MAX_RUNS} runs of (header, data) plus slack. */
    private static final int MAX_VECTOR = 2 * ReadRuns.MAX_RUNS + 9;
    static final int BATCH_BYTES = 256 * 1024;

    private final NbdChannel channel;
    private final Deadlines deadlines;
    private final ReentrantLock lock = new ReentrantLock();
    private final ByteBuffer headers;
    private final ByteBuffer[] vector = new ByteBuffer[MAX_VECTOR];
    private int vectorLength;
    private volatile IOException failure;
    /** Pending whole messages (between 0 and position), guarded by the lock; null until batching starts. */
    private ByteBuffer batch;
    private volatile Thread batchingThread;

    /**
     * @param headers the header area, owned by the caller until {@link #close()}: {@link #HEADER_AREA_BYTES} for a
     *                connection in transmission, a few dozen bytes are enough for option replies alone
     */
    ReplyWriter(NbdChannel channel, ByteBuffer headers) {
        this(channel, headers, Deadlines.DISABLED);
    }

    /** With a write deadline armed around every message (a client that stops reading gets dropped). */
    ReplyWriter(NbdChannel channel, ByteBuffer headers, Deadlines deadlines) {
        this.channel = channel;
        this.headers = headers;
        this.deadlines = deadlines;
    }

    /**
     * Lets {@code thread} (the reader) batch its replies into {@code batchBuffer} (at least
     * {@link #BATCH_BYTES}, owned by the caller until {@link #close()}); the thread must call
     * {@link #flushBatch()} before blocking.
     */
    void batchRepliesOf(Thread thread, ByteBuffer batchBuffer) {
        lock.lock();
        try {
            batch = batchBuffer.clear();
            batchingThread = thread;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Stops every later write (they fail with an {@code IOException}) and lets go of the caller's
     * buffers. Waits for a write in progress, so close the channel first: that ends a write blocked
     * on a client that does not read. Idempotent.
     */
    void close() {
        lock.lock();
        try {
            if (failure == null) {
                failure = new IOException("connection to " + channel.describe() + " is closed");
            }
            batch = null;
            batchingThread = null;
        } finally {
            lock.unlock();
        }
    }

    /** Writes the batched replies, if any. */
    void flushBatch() throws IOException {
        lock.lock();
        try {
            if (batch == null || batch.position() == 0) {
                return;
            }
            begin();
            send(false);
        } finally {
            lock.unlock();
        }
    }

    /** Whether an earlier write failed, so nothing more can be sent. */
    boolean isBroken() {
        return failure != null;
    }

    /** Sends raw bytes (greeting, EXPORT_NAME reply). */
    void raw(ByteBuffer bytes) throws IOException {
        lock.lock();
        try {
            begin();
            add(bytes);
            send();
        } finally {
            lock.unlock();
        }
    }

    /** Sends one option reply with a payload made of {@code parts} (each consumed). */
    void optionReply(int option, int replyType, ByteBuffer... parts) throws IOException {
        long length = 0;
        for (ByteBuffer p : parts) {
            length += p.remaining();
        }
        lock.lock();
        try {
            begin();
            ByteBuffer h = header(REPLY_HEADER_LENGTH);
            h.putLong(REPLY_MAGIC_OFFSET, OPTION_REPLY_MAGIC);
            h.putInt(REPLY_OPTION_OFFSET, option);
            h.putInt(REPLY_TYPE_OFFSET, replyType);
            h.putInt(REPLY_LENGTH_OFFSET, (int) length);
            for (ByteBuffer p : parts) {
                add(p);
            }
            send();
        } finally {
            lock.unlock();
        }
    }

    /** A simple reply without data: success (0) or an NBD error number. */
    void simple(long cookie, int error) throws IOException {
        lock.lock();
        try {
            begin();
            simpleHeader(cookie, error);
            send();
        } finally {
            lock.unlock();
        }
    }

    /** A successful simple reply to READ, followed by the data. */
    void simpleRead(long cookie, ByteBuffer data) throws IOException {
        lock.lock();
        try {
            begin();
            simpleHeader(cookie, 0);
            add(data);
            send();
        } finally {
            lock.unlock();
        }
    }

    /** A single NBD_REPLY_TYPE_NONE chunk with DONE. */
    void structuredNone(long cookie) throws IOException {
        lock.lock();
        try {
            begin();
            chunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0);
            send();
        } finally {
            lock.unlock();
        }
    }

    /** One OFFSET_DATA chunk with DONE carrying all of {@code data} for {@code offsetBytes}. */
    void structuredData(long cookie, long offsetBytes, ByteBuffer data) throws IOException {
        lock.lock();
        try {
            begin();
            chunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, cookie, DATA_PAYLOAD_HEADER_LENGTH + data.remaining());
            header(DATA_PAYLOAD_HEADER_LENGTH).putLong(DATA_OFFSET_OFFSET, offsetBytes);
            add(data);
            send();
        } finally {
            lock.unlock();
        }
    }

    /**
     * A structured READ reply of several chunks: OFFSET_HOLE for hole runs, OFFSET_DATA (a slice
     * of {@code data}, which holds the whole request from its position 0) for data runs; the last
     * chunk carries DONE.
     */
    void structuredRead(long cookie, long offsetBytes, ByteBuffer data, ReadRuns runs) throws IOException {
        lock.lock();
        try {
            begin();
            for (int i = 0; i < runs.count(); i++) {
                int flags = i == runs.count() - 1 ? REPLY_FLAG_DONE : 0;
                int start = runs.startBytes(i);
                int length = runs.lengthBytes(i);
                if (runs.hole(i)) {
                    chunkHeader(flags, REPLY_TYPE_OFFSET_HOLE, cookie, HOLE_PAYLOAD_LENGTH);
                    ByteBuffer p = header(HOLE_PAYLOAD_LENGTH);
                    p.putLong(HOLE_OFFSET_OFFSET, offsetBytes + start);
                    p.putInt(HOLE_SIZE_OFFSET, length);
                } else {
                    chunkHeader(flags, REPLY_TYPE_OFFSET_DATA, cookie, DATA_PAYLOAD_HEADER_LENGTH + length);
                    header(DATA_PAYLOAD_HEADER_LENGTH).putLong(DATA_OFFSET_OFFSET, offsetBytes + start);
                    add(data.slice(start, length));
                }
            }
            send();
        } finally {
            lock.unlock();
        }
    }

    /** Whether {@link #structuredReadFromFile} can be used on this connection. */
    boolean canSendFiles() {
        return channel.canSendFiles();
    }

    /**
     * A structured READ reply whose data the kernel sends from {@code src} ({@link NbdChannel#sendFile}):
     * OFFSET_DATA chunks for the data runs (the whole range when {@code runs} is null), OFFSET_HOLE for
     * the hole runs, then a NONE chunk with DONE. Content chunks never carry DONE, so that a file read
     * failing after a chunk header went out can still be answered in protocol: the rest of that chunk
     * goes out as zeros and an ERROR_OFFSET chunk with DONE ends the reply.
     *
     * @param src where byte {@code offsetBytes + i} of the request is byte {@code offsetBytes + i}
     * @throws ReadFailedException when the file read failed and the client was told (the stream is in sync)
     * @throws IOException         when the socket failed (every later write fails too)
     */
    void structuredReadFromFile(long cookie, long offsetBytes, int lengthBytes, FileChannel src, ReadRuns runs)
            throws IOException {
        lock.lock();
        try {
            begin();
            int count = runs == null ? 1 : runs.count();
            for (int i = 0; i < count; i++) {
                int start = runs == null ? 0 : runs.startBytes(i);
                int length = runs == null ? lengthBytes : runs.lengthBytes(i);
                if (runs != null && runs.hole(i)) {
                    chunkHeader(0, REPLY_TYPE_OFFSET_HOLE, cookie, HOLE_PAYLOAD_LENGTH);
                    ByteBuffer p = header(HOLE_PAYLOAD_LENGTH);
                    p.putLong(HOLE_OFFSET_OFFSET, offsetBytes + start);
                    p.putInt(HOLE_SIZE_OFFSET, length);
                    continue;
                }
                chunkHeader(0, REPLY_TYPE_OFFSET_DATA, cookie, DATA_PAYLOAD_HEADER_LENGTH + length);
                header(DATA_PAYLOAD_HEADER_LENGTH).putLong(DATA_OFFSET_OFFSET, offsetBytes + start);
                send(false);
                begin();
                sendFile(cookie, src, offsetBytes + start, length);
            }
            chunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0);
            send();
        } finally {
            lock.unlock();
        }
    }

    /** The file read of a {@link #structuredReadFromFile} failed; the client got an ERROR_OFFSET chunk. */
    static final class ReadFailedException extends IOException {
        ReadFailedException(String message, IOException cause) {
            super(message, cause);
        }
    }

    private void sendFile(long cookie, FileChannel src, long positionBytes, int lengthBytes) throws IOException {
        NbdChannel.FileReadFailure readFailure;
        deadlines.writing();
        try {
            channel.sendFile(src, positionBytes, lengthBytes);
            return;
        } catch (NbdChannel.FileReadFailure e) {
            readFailure = e;
        } catch (IOException e) {
            failure = e;
            throw e;
        } finally {
            deadlines.written();
        }
        long failedAt = positionBytes + readFailure.sentBytes();
        add(ByteBuffer.allocate((int) (lengthBytes - readFailure.sentBytes()))); // the chunk's promised length
        String message = "read at offset " + failedAt + " failed: " + readFailure.getMessage();
        errorChunk(cookie, REPLY_TYPE_ERROR_OFFSET, EIO, truncateUtf8(message, MAX_ERROR_MESSAGE_BYTES),
                ERROR_OFFSET_OFFSET_LENGTH);
        header(ERROR_OFFSET_OFFSET_LENGTH).putLong(0, failedAt);
        send(false);
        throw new ReadFailedException(message, (IOException) readFailure.getCause());
    }

    /** One BLOCK_STATUS chunk per payload (each already holds context id and descriptors); DONE on the last. */
    void blockStatus(long cookie, ByteBuffer[] payloads, int count) throws IOException {
        lock.lock();
        try {
            begin();
            for (int i = 0; i < count; i++) {
                int flags = i == count - 1 ? REPLY_FLAG_DONE : 0;
                chunkHeader(flags, REPLY_TYPE_BLOCK_STATUS, cookie, payloads[i].remaining());
                add(payloads[i]);
            }
            send();
        } finally {
            lock.unlock();
        }
    }

    /** An NBD_REPLY_TYPE_ERROR chunk with DONE, carrying the error and a (truncated) message. */
    void structuredError(long cookie, int error, String message) throws IOException {
        byte[] text = truncateUtf8(message == null ? "" : message, MAX_ERROR_MESSAGE_BYTES);
        lock.lock();
        try {
            begin();
            errorChunk(cookie, REPLY_TYPE_ERROR, error, text, 0);
            send();
        } finally {
            lock.unlock();
        }
    }

    /**
     * Queues an error chunk with DONE: its header, error code and message; {@code tailBytes} more
     * payload bytes follow the message, queued by the caller (ERROR_OFFSET's offset).
     */
    private void errorChunk(long cookie, int type, int error, byte[] text, int tailBytes) {
        chunkHeader(REPLY_FLAG_DONE, type, cookie, ERROR_MESSAGE_OFFSET + text.length + tailBytes);
        ByteBuffer p = header(ERROR_MESSAGE_OFFSET);
        p.putInt(ERROR_CODE_OFFSET, error);
        p.putShort(ERROR_MESSAGE_LENGTH_OFFSET, (short) text.length);
        add(ByteBuffer.wrap(text));
    }

    private void begin() throws IOException {
        if (failure != null) {
            throw new IOException("cannot write to " + channel.describe() + ": " + failure.getMessage(), failure);
        }
        headers.clear();
        vectorLength = 0;
    }

    private void simpleHeader(long cookie, int error) {
        ByteBuffer h = header(SIMPLE_REPLY_LENGTH);
        h.putInt(SIMPLE_MAGIC_OFFSET, SIMPLE_REPLY_MAGIC);
        h.putInt(SIMPLE_ERROR_OFFSET, error);
        h.putLong(SIMPLE_COOKIE_OFFSET, cookie);
    }

    private void chunkHeader(int flags, int type, long cookie, int payloadLength) {
        ByteBuffer h = header(CHUNK_HEADER_LENGTH);
        h.putInt(CHUNK_MAGIC_OFFSET, STRUCTURED_REPLY_MAGIC);
        h.putShort(CHUNK_FLAGS_OFFSET, (short) flags);
        h.putShort(CHUNK_TYPE_OFFSET, (short) type);
        h.putLong(CHUNK_COOKIE_OFFSET, cookie);
        h.putInt(CHUNK_LENGTH_OFFSET, payloadLength);
    }

    /** Reserves {@code bytes} of header space and appends it to the message. */
    private ByteBuffer header(int bytes) {
        int at = headers.position();
        ByteBuffer h = headers.slice(at, bytes);
        headers.position(at + bytes);
        add(h);
        return h;
    }

    private void add(ByteBuffer b) {
        vector[vectorLength++] = b;
    }

    private void send() throws IOException {
        send(true);
    }

    private void send(boolean mayBatch) throws IOException {
        if (mayBatch && batch != null && Thread.currentThread() == batchingThread) {
            long total = 0;
            for (int i = 0; i < vectorLength; i++) {
                total += vector[i].remaining();
            }
            if (total <= batch.remaining()) {
                for (int i = 0; i < vectorLength; i++) {
                    batch.put(vector[i]);
                    vector[i] = null;
                }
                vectorLength = 0;
                return;
            }
        }
        if (batch != null && batch.position() > 0) {
            System.arraycopy(vector, 0, vector, 1, vectorLength);
            vector[0] = batch.flip();
            vectorLength++;
        }
        int first = 0;
        deadlines.writing();
        try {
            while (first < vectorLength) {
                channel.write(vector, first, vectorLength - first);
                while (first < vectorLength && !vector[first].hasRemaining()) {
                    first++;
                }
            }
        } catch (IOException e) {
            failure = e;
            throw e;
        } finally {
            deadlines.written();
            for (int i = 0; i < vectorLength; i++) {
                vector[i] = null;
            }
            vectorLength = 0;
            if (batch != null) {
                batch.clear();
            }
        }
    }

    static byte[] truncateUtf8(String text, int maxBytes) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        if (bytes.length <= maxBytes) {
            return bytes;
        }
        int end = maxBytes;
        while (end > 0 && (bytes[end] & 0xC0) == 0x80) {
            end--; // do not cut a multi-byte character
        }
        return java.util.Arrays.copyOf(bytes, end);
    }
}
