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
import static org.blksnap.nbd.NbdTransmissionDescriptor.EINVAL;
import static org.blksnap.nbd.NbdTransmissionDescriptor.EIO;
import static org.blksnap.nbd.NbdTransmissionDescriptor.ENOMEM;
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
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;

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
            dataChunkHeader(REPLY_FLAG_DONE, cookie, offsetBytes, data.remaining());
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
                    holeChunk(flags, cookie, offsetBytes + start, length);
                } else {
                    dataChunkHeader(flags, cookie, offsetBytes + start, length);
                    add(data.slice(start, length));
                }
            }
            send();
        } finally {
            lock.unlock();
        }
    }

    /** Whether {@link #structuredReadFromSender} can be used on this connection. */
    boolean canSendFiles() {
        return channel.canSendFiles();
    }

    /**
     * A structured READ reply whose data a device's {@link BlockDevice.Sender} hands over: an
     * OFFSET_DATA chunk per data run (the whole range when {@code runs} is null) carrying the run's
     * bytes as the sender hands them (file ranges the kernel sends, {@link NbdChannel#sendFile}, and
     * buffers), OFFSET_HOLE chunks for the hole runs, then a NONE chunk with DONE. Content chunks never
     * carry DONE, so that a device failing after part of the reply went out can still be answered in
     * protocol: the rest of the open chunk goes out as zeros and an ERROR_OFFSET chunk with DONE ends
     * the reply at the failing offset (a plain ERROR chunk when every byte had gone out).
     *
     * <p>The writer lock is taken when the first byte of the reply goes out, not before, so that a
     * device that reads into the scratch buffer first does not hold up other replies while it reads;
     * from then on it is held to the end of the reply.
     *
     * @param pool where the sink's scratch buffer ({@code lengthBytes}) comes from when the sender asks
     *             for it; it goes back before this returns
     * @throws ReadFailedException when the device failed after part of the reply went out and the
     *                             client was told (the stream is in sync)
     * @throws IOException         when the socket failed (every later write fails too), or what the device
     *                             threw before any of the reply went out (nothing was sent: the caller
     *                             answers it as any failed request)
     */
    void structuredReadFromSender(long cookie, long offsetBytes, int lengthBytes, BlockDevice.Sender sender,
                                  ReadRuns runs, BufferPool pool) throws IOException {
        SenderReply reply = new SenderReply(cookie, offsetBytes, lengthBytes, runs, pool);
        try {
            reply.answer(sender);
        } finally {
            reply.release();
        }
    }

    /** The device failed during a {@link #structuredReadFromSender}; the client got an error chunk. */
    static final class ReadFailedException extends IOException {
        ReadFailedException(String message, Exception cause) {
            super(message, cause);
        }
    }

    /**
     * One {@link #structuredReadFromSender} reply and the sink its sender hands bytes to. Tells a
     * failure of the socket (recorded in {@link #failure} by {@link #send(boolean)} and by
     * {@link #file}) from one of the device (anything else the sender throws). Not thread-safe: the
     * request's thread only.
     */
    private final class SenderReply implements BlockDevice.ByteSink {
        private final long cookie;
        private final long offsetBytes;
        private final int lengthBytes;
        private final ReadRuns runs;
        private final BufferPool pool;
        private ByteBuffer scratch;
        private boolean locked;
        /** Whether part of the reply reached the socket (then a failure must be answered inside it). */
        private boolean written;
        /** Runs before this index went out (hole chunks) or are going out (data). */
        private int emittedRuns;
        private int run;
        private int runStartBytes;
        private int runLengthBytes;
        private int sentInRunBytes;
        private boolean headerSent;
        /** What a sink call threw: the sender must not go on after it. */
        private IOException sinkFailure;

        SenderReply(long cookie, long offsetBytes, int lengthBytes, ReadRuns runs, BufferPool pool) {
            this.cookie = cookie;
            this.offsetBytes = offsetBytes;
            this.lengthBytes = lengthBytes;
            this.runs = runs;
            this.pool = pool;
        }

        private int runCount() {
            return runs == null ? 1 : runs.count();
        }

        private boolean hole(int i) {
            return runs != null && runs.hole(i);
        }

        /** Runs the sender over every data run and ends the reply. */
        void answer(BlockDevice.Sender sender) throws IOException {
            for (int i = 0; i < runCount(); i++) {
                if (hole(i)) {
                    continue;
                }
                run = i;
                runStartBytes = runs == null ? 0 : runs.startBytes(i);
                runLengthBytes = runs == null ? lengthBytes : runs.lengthBytes(i);
                sentInRunBytes = 0;
                headerSent = false;
                try {
                    sender.send(offsetBytes + runStartBytes, runLengthBytes, this);
                    if (sinkFailure != null) {
                        throw sinkFailure; // swallowed by the sender: the run is not whole
                    }
                    if (sentInRunBytes != runLengthBytes) {
                        throw new IllegalStateException("the device handed " + sentInRunBytes + " of " + runLengthBytes
                                + " bytes at offset " + (offsetBytes + runStartBytes));
                    }
                } catch (IOException | RuntimeException e) {
                    failed(e);
                }
            }
            take(runCount());
            chunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0);
            send();
        }

        /**
         * Takes the writer lock if this reply does not hold it yet and queues the chunks of the runs
         * before {@code upTo} that have not gone out (holes: data runs go out with their bytes).
         */
        private void take(int upTo) throws IOException {
            if (!locked) {
                lock.lock();
                locked = true;
            }
            begin();
            for (; emittedRuns < upTo; emittedRuns++) {
                if (hole(emittedRuns)) {
                    holeChunk(0, cookie, offsetBytes + runs.startBytes(emittedRuns), runs.lengthBytes(emittedRuns));
                }
            }
        }

        /** Queues what must precede the current run's next bytes: earlier holes, the run's chunk header. */
        private void startData() throws IOException {
            take(run);
            if (!headerSent) {
                dataChunkHeader(0, cookie, offsetBytes + runStartBytes, runLengthBytes);
                headerSent = true;
                emittedRuns = run + 1;
            }
        }

        /** Checks that {@code bytes} more fit in the current run. */
        private void claim(long bytes) {
            if (sinkFailure != null) {
                throw new IllegalStateException("the device went on sending after the connection's sink failed",
                        sinkFailure);
            }
            if (bytes < 0 || bytes > runLengthBytes - sentInRunBytes) {
                throw new IllegalStateException("the device handed " + bytes + " bytes at offset "
                        + (offsetBytes + runStartBytes + sentInRunBytes) + " with "
                        + (runLengthBytes - sentInRunBytes) + " left of its range");
            }
        }

        @Override
        public void bytes(ByteBuffer src) throws IOException {
            int n = src.remaining();
            claim(n);
            if (n == 0) {
                return;
            }
            try {
                startData();
                add(src);
                send(false);
            } catch (IOException e) {
                sinkFailure = e;
                throw e;
            }
            written = true;
            sentInRunBytes += n;
        }

        @Override
        public void file(FileChannel file, long positionBytes, int lengthBytes) throws IOException {
            claim(lengthBytes);
            if (lengthBytes == 0) {
                return;
            }
            try {
                startData();
                if (vectorLength > 0) {
                    send(false);
                }
                written = true;
                begin();
            } catch (IOException e) {
                sinkFailure = e;
                throw e;
            }
            deadlines.writing();
            try {
                channel.sendFile(file, positionBytes, lengthBytes);
            } catch (NbdChannel.FileReadFailure e) {
                sentInRunBytes += (int) e.sentBytes();
                sinkFailure = new IOException("reading " + lengthBytes + " bytes of a file from position " + positionBytes
                        + " failed after " + e.sentBytes() + ": " + e.getMessage(), e.getCause());
                throw sinkFailure;
            } catch (IOException e) {
                failure = e;
                sinkFailure = e;
                throw e;
            } finally {
                deadlines.written();
            }
            sentInRunBytes += lengthBytes;
        }

        @Override
        public ByteBuffer scratch() throws IOException {
            if (scratch == null) {
                scratch = pool.acquire(lengthBytes); // every run fits: a run is part of the request
            }
            return scratch.clear().limit(runLengthBytes);
        }

        /**
         * The sender threw {@code e}: the socket's failure is thrown on as a broken connection; a device
         * failure before any of the reply went out is thrown as it is (the caller answers it); after,
         * the open chunk is padded to its promised length and an error chunk ends the reply.
         */
        private void failed(Exception e) throws IOException {
            if (failure != null) {
                throw new IOException("cannot write to " + channel.describe() + ": " + failure.getMessage(), failure);
            }
            if (!written) {
                if (e instanceof IOException io) {
                    throw io;
                }
                throw (RuntimeException) e;
            }
            begin();
            long failedAt = offsetBytes + runStartBytes + sentInRunBytes;
            if (headerSent && sentInRunBytes < runLengthBytes) {
                add(ByteBuffer.allocate(runLengthBytes - sentInRunBytes)); // the chunk's promised length
            }
            String message = "read at offset " + failedAt + " failed: " + e.getMessage();
            byte[] text = truncateUtf8(message, MAX_ERROR_MESSAGE_BYTES);
            if (failedAt < offsetBytes + lengthBytes) {
                errorChunk(cookie, REPLY_TYPE_ERROR_OFFSET, errorOf(e), text, ERROR_OFFSET_OFFSET_LENGTH);
                header(ERROR_OFFSET_OFFSET_LENGTH).putLong(0, failedAt);
            } else {
                errorChunk(cookie, REPLY_TYPE_ERROR, errorOf(e), text, 0); // every byte went out; the check after failed
            }
            send(false);
            throw new ReadFailedException(message, e);
        }

        /** Gives the writer lock and the scratch buffer back. */
        void release() {
            if (locked) {
                locked = false;
                lock.unlock();
            }
            pool.release(scratch);
            scratch = null;
        }
    }

    /** The NBD error for what a device threw, as {@link RequestHandler} maps the errors of a whole request. */
    private static int errorOf(Exception e) {
        if (e instanceof BlksnapException b) {
            return NbdTransmissionDescriptor.errorOf(b.errno());
        }
        if (e instanceof BufferPool.NoMemoryException) {
            return ENOMEM;
        }
        if (e instanceof IllegalArgumentException) {
            return EINVAL;
        }
        return EIO;
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

    /** Queues an OFFSET_HOLE chunk: {@code lengthBytes} of zeros at {@code offsetBytes}. */
    private void holeChunk(int flags, long cookie, long offsetBytes, int lengthBytes) {
        chunkHeader(flags, REPLY_TYPE_OFFSET_HOLE, cookie, HOLE_PAYLOAD_LENGTH);
        ByteBuffer p = header(HOLE_PAYLOAD_LENGTH);
        p.putLong(HOLE_OFFSET_OFFSET, offsetBytes);
        p.putInt(HOLE_SIZE_OFFSET, lengthBytes);
    }

    /** Queues the header of an OFFSET_DATA chunk for {@code lengthBytes} at {@code offsetBytes}; the data follows. */
    private void dataChunkHeader(int flags, long cookie, long offsetBytes, int lengthBytes) {
        chunkHeader(flags, REPLY_TYPE_OFFSET_DATA, cookie, DATA_PAYLOAD_HEADER_LENGTH + lengthBytes);
        header(DATA_PAYLOAD_HEADER_LENGTH).putLong(DATA_OFFSET_OFFSET, offsetBytes);
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
