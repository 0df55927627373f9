package org.blksnap.backup;

import com.github.luben.zstd.Zstd;
import com.github.luben.zstd.ZstdException;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;

/**
 * Reads blobs by {@link Ref}: the blob's header must match the ref, its payload must decompress to
 * the raw length, and the raw bytes must hash to the ref's name, else the read fails with
 * {@link RepositoryException.Code#DAMAGED} naming the pack and offset. Pack channels are opened once
 * and kept until {@link #close}. Thread-safe (positional reads on shared channels).
 */
final class BlobReader implements AutoCloseable {
    private final Path packsDir;
    private final ConcurrentMap<PackId, FileChannel> channels = new ConcurrentHashMap<>();

    BlobReader(Path packsDir) {
        this.packsDir = packsDir;
    }

    /** The raw bytes of the blob {@code ref} names, checked against its name. */
    byte[] read(Ref ref) throws RepositoryException {
        if (ref.isHole()) {
            throw new IllegalArgumentException("ref is a hole: it has no blob");
        }
        Path path = packsDir.resolve(ref.pack() + PackDescriptor.SUFFIX);
        FileChannel ch = channel(ref, path);
        ByteBuffer blob;
        try {
            blob = readFully(ch, path, ref.offsetBytes(), ref.lengthBytes());
        } catch (EOFException e) {
            throw damaged(ref, "the pack ends before the blob (" + e.getMessage() + ")");
        } catch (IOException e) {
            throw RepositoryException.io("cannot read " + ref.lengthBytes() + " bytes at offset " + ref.offsetBytes()
                    + " of " + path, e);
        }
        if (blob.getInt(0) != PackDescriptor.BLOB_MAGIC) {
            throw damaged(ref, "no blob header at its offset");
        }
        int type = blob.get(PackDescriptor.BLOB_TYPE_OFFSET) & 0xff;
        int comp = blob.get(PackDescriptor.BLOB_COMP_OFFSET) & 0xff;
        int rawLength = blob.getInt(PackDescriptor.BLOB_RAW_LENGTH_OFFSET);
        int storedLength = blob.getInt(PackDescriptor.BLOB_STORED_LENGTH_OFFSET);
        Sha256 named = Sha256.read(blob.position(PackDescriptor.BLOB_HASH_OFFSET));
        if (type != ref.kind() || !named.equals(ref.hash())) {
            throw damaged(ref, "the blob header names " + (type == NodeDescriptor.KIND_NODE ? "node " : "chunk ")
                    + named.shortHex());
        }
        if (rawLength < 0 || rawLength > PackDescriptor.MAX_RAW_BYTES
                || storedLength != ref.lengthBytes() - PackDescriptor.BLOB_HEADER_BYTES) {
            throw damaged(ref, "blob lengths raw " + rawLength + " stored " + storedLength + " do not fit the ref's "
                    + ref.lengthBytes() + " bytes");
        }
        byte[] stored = Arrays.copyOfRange(blob.array(), PackDescriptor.BLOB_HEADER_BYTES, ref.lengthBytes());
        byte[] raw;
        if (comp == PackDescriptor.COMP_NONE) {
            raw = stored;
            if (rawLength != storedLength) {
                throw damaged(ref, "an uncompressed blob of raw length " + rawLength + " stores " + storedLength);
            }
        } else if (comp == PackDescriptor.COMP_ZSTD) {
            try {
                raw = Zstd.decompress(stored, rawLength);
            } catch (ZstdException | IllegalArgumentException e) {
                throw damaged(ref, "zstd: " + e.getMessage());
            }
            if (raw.length != rawLength) {
                throw damaged(ref, "decompressed to " + raw.length + " bytes, not " + rawLength);
            }
        } else {
            throw damaged(ref, "unknown compression " + comp);
        }
        if (!Sha256.of(raw).equals(ref.hash())) {
            throw damaged(ref, "its content does not hash to its name");
        }
        return raw;
    }

    private FileChannel channel(Ref ref, Path path) throws RepositoryException {
        FileChannel ch = channels.get(ref.pack());
        if (ch != null) {
            return ch;
        }
        try {
            FileChannel opened = FileChannel.open(path, StandardOpenOption.READ);
            FileChannel raced = channels.putIfAbsent(ref.pack(), opened);
            if (raced != null) {
                opened.close();
                return raced;
            }
            return opened;
        } catch (NoSuchFileException e) {
            throw damaged(ref, "its pack is missing");
        } catch (IOException e) {
            throw RepositoryException.io("cannot open " + path, e);
        }
    }

    private static RepositoryException damaged(Ref ref, String why) {
        return new RepositoryException(RepositoryException.Code.DAMAGED, ref + ": " + why);
    }

    /**
     * Reads exactly {@code length} bytes at {@code offsetBytes}.
     *
     * @throws EOFException the file ends first (message: path, offset and length)
     */
    static ByteBuffer readFully(FileChannel ch, Path path, long offsetBytes, int length) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(length);
        long pos = offsetBytes;
        while (buf.hasRemaining()) {
            int n = ch.read(buf, pos);
            if (n < 0) {
                throw new EOFException(path + " ends at " + pos + ", reading " + length + " bytes at " + offsetBytes);
            }
            pos += n;
        }
        return buf.flip();
    }

    @Override
    public void close() {
        for (FileChannel ch : channels.values()) {
            try {
                ch.close();
            } catch (IOException e) {
                // read-only channels: nothing to lose
            }
        }
        channels.clear();
    }
}
