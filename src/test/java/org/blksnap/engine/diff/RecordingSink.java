package org.blksnap.engine.diff;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.blksnap.engine.BlockDevice;

/**
 * A {@link BlockDevice.ByteSink} that receives as a socket does under sendfile: bytes handed as
 * buffers are copied at once, file ranges are kept as (channel, position, length) and read only in
 * {@link #receive()}, as a receiver copying page references later would read them. Its scratch
 * buffer is larger than asked and starts filled with 0x5A, so bytes a device forgot to fill show.
 * Not thread-safe (one send).
 */
class RecordingSink implements BlockDevice.ByteSink {
    /** One call: a file range ({@code file} set) or bytes ({@code bytes} set). */
    record Piece(FileChannel file, long positionBytes, int lengthBytes, byte[] bytes) {
        boolean isFile() {
            return file != null;
        }
    }

    final List<Piece> pieces = new ArrayList<>();
    private final int lengthBytes;
    private final ByteBuffer scratch;
    private int scratchCalls;

    /** @param lengthBytes the length of the send this sink is for */
    RecordingSink(int lengthBytes) {
        this.lengthBytes = lengthBytes;
        byte[] garbage = new byte[lengthBytes + 4096];
        Arrays.fill(garbage, (byte) 0x5A);
        this.scratch = ByteBuffer.allocateDirect(garbage.length).put(garbage);
    }

    @Override
    public void file(FileChannel file, long positionBytes, int lengthBytes) {
        pieces.add(new Piece(file, positionBytes, lengthBytes, null));
    }

    @Override
    public void bytes(ByteBuffer src) {
        byte[] b = new byte[src.remaining()];
        src.get(b);
        pieces.add(new Piece(null, 0, b.length, b));
    }

    @Override
    public ByteBuffer scratch() {
        scratchCalls++;
        return scratch.clear().limit(lengthBytes);
    }

    int scratchCalls() {
        return scratchCalls;
    }

    List<Piece> filePieces() {
        return pieces.stream().filter(Piece::isFile).toList();
    }

    /** Bytes handed as buffers, in all. */
    long bytesHanded() {
        return pieces.stream().filter(p -> !p.isFile()).mapToLong(Piece::lengthBytes).sum();
    }

    /** What a receiver gets now: the pieces in order, file ranges read at this moment (zeros past a file's end). */
    byte[] receive() throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (Piece p : pieces) {
            if (!p.isFile()) {
                out.writeBytes(p.bytes());
                continue;
            }
            ByteBuffer b = ByteBuffer.allocate(p.lengthBytes());
            while (b.hasRemaining()) {
                if (p.file().read(b, p.positionBytes() + b.position()) < 0) {
                    break;
                }
            }
            out.writeBytes(b.array());
        }
        return out.toByteArray();
    }
}
