package org.blksnap.backup;

import com.github.luben.zstd.Zstd;
import com.github.luben.zstd.ZstdCompressCtx;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import java.util.zip.CRC32C;

/**
 * The writing side of the repository's content-addressed store: {@link #put} stores a blob once
 * (named by the SHA-256 of its raw bytes) in the open pack, or returns where it already is. Blobs
 * are zstd-compressed outside the lock (stored raw when that does not shrink them), then appended
 * under it; a pack that reaches {@link PackDescriptor#TARGET_PACK_BYTES} is sealed: trailer,
 * fsync, rename into {@code packs/}, fsync of the directory. Refs to blobs of the open pack are
 * only durable after {@link #seal}, which a point's manifest must wait for.
 *
 * <p>Thread-safe: any number of threads may {@link #put} at once; a blob put by two threads at
 * once is stored once. {@link #seal} and {@link #close} may be called from any thread.
 */
final class ChunkStore implements AutoCloseable {
    /** zstd level: 3 is zstd's default, the best ratio for its speed on disk data. */
    static final int ZSTD_LEVEL = 3;

    private final Path packsDir;
    private final Path tmpDir;
    private final long targetPackBytes;
    private final Map<Sha256, Ref> index;
    private final ReentrantLock lock = new ReentrantLock();
    private final AtomicLong newBytes = new AtomicLong();
    private final AtomicLong newBlobs = new AtomicLong();
    /** zstd contexts reused across puts (one costs an allocation of native memory); at most one per thread at a time. */
    private final java.util.concurrent.ConcurrentLinkedQueue<ZstdCompressCtx> contexts = new java.util.concurrent.ConcurrentLinkedQueue<>();
    // guarded by lock
    private OpenPack open;

    private static final class OpenPack {
        final PackId id;
        final Path tmp;
        final FileChannel ch;
        final List<byte[]> entries = new ArrayList<>();
        long positionBytes;

        OpenPack(PackId id, Path tmp, FileChannel ch) {
            this.id = id;
            this.tmp = tmp;
            this.ch = ch;
        }
    }

    /**
     * @param index the refs of every blob already in sealed packs ({@link PackScan#index}); the
     *              store adds what it writes
     */
    ChunkStore(Path packsDir, Path tmpDir, Map<Sha256, Ref> index, long targetPackBytes) {
        this.packsDir = packsDir;
        this.tmpDir = tmpDir;
        this.index = new ConcurrentHashMap<>(index);
        this.targetPackBytes = targetPackBytes;
    }

    /** Bytes appended to packs by this store (blob headers included), so far. */
    long newBytes() {
        return newBytes.get();
    }

    /** Blobs appended by this store, so far. */
    long newBlobs() {
        return newBlobs.get();
    }

    /** A blob to store: its kind, name and raw bytes. */
    record Blob(int kind, Sha256 hash, byte[] raw) {
    }

    /**
     * Stores {@code raw} as a blob of {@code kind} unless a blob of that name and kind exists.
     *
     * @param hash the SHA-256 of {@code raw} (the caller computed it to name the chunk)
     * @return where the blob is; durable once {@link #seal} returns
     * @throws RepositoryException the pack could not be written (NO_SPACE when the filesystem is full)
     */
    Ref put(int kind, Sha256 hash, byte[] raw) throws RepositoryException {
        return putAll(List.of(new Blob(kind, hash, raw)))[0];
    }

    /**
     * Stores blobs as {@link #put} does, appending those not stored yet next to each other (one
     * lock for all), so the chunks of one read run stay together in a pack and restore reads them
     * in order.
     */
    Ref[] putAll(List<Blob> blobs) throws RepositoryException {
        Ref[] refs = new Ref[blobs.size()];
        ByteBuffer[] encoded = new ByteBuffer[blobs.size()];
        for (int i = 0; i < refs.length; i++) {
            Blob b = blobs.get(i);
            Ref known = index.get(b.hash());
            if (known != null && known.kind() == b.kind()) {
                refs[i] = known;
            } else {
                encoded[i] = encode(b);
            }
        }
        lock.lock();
        try {
            for (int i = 0; i < refs.length; i++) {
                if (refs[i] == null) {
                    refs[i] = appendLocked(blobs.get(i), encoded[i]);
                }
            }
            if (open != null && open.positionBytes >= targetPackBytes) {
                sealLocked();
            }
            return refs;
        } finally {
            lock.unlock();
        }
    }

    /**
     * The blob as stored: header, then the payload compressed straight behind it (no copy), or the
     * raw bytes when zstd does not shrink them or {@link #looksIncompressible} says it would not.
     */
    private ByteBuffer encode(Blob b) {
        byte[] raw = b.raw();
        if (raw.length > PackDescriptor.MAX_RAW_BYTES) {
            throw new IllegalArgumentException("raw.length (" + raw.length + ") must be <= " + PackDescriptor.MAX_RAW_BYTES);
        }
        int h = PackDescriptor.BLOB_HEADER_BYTES;
        byte[] out = null;
        int payloadLength = raw.length;
        ZstdCompressCtx ctx = contexts.poll();
        if (ctx == null) {
            ctx = new ZstdCompressCtx().setLevel(ZSTD_LEVEL);
        }
        try {
            if (!looksIncompressible(ctx, raw)) {
                out = new byte[h + (int) Zstd.compressBound(raw.length)];
                int n = ctx.compressByteArray(out, h, out.length - h, raw, 0, raw.length);
                if (n < raw.length) {
                    payloadLength = n;
                } else {
                    out = null;
                }
            }
        } finally {
            contexts.offer(ctx);
        }
        boolean useZstd = out != null;
        if (!useZstd) {
            out = new byte[h + raw.length];
            System.arraycopy(raw, 0, out, h, raw.length);
        }
        ByteBuffer blob = ByteBuffer.wrap(out, 0, h + payloadLength);
        blob.putInt(PackDescriptor.BLOB_MAGIC).put((byte) b.kind())
                .put((byte) (useZstd ? PackDescriptor.COMP_ZSTD : PackDescriptor.COMP_NONE)).putShort((short) 0)
                .putInt(raw.length).putInt(payloadLength);
        b.hash().write(blob);
        return blob.position(0);
    }

    /** Bytes of each sample {@link #looksIncompressible} compresses. */
    static final int PROBE_BYTES = 4096;
    /** A sample that zstd does not shrink below this fraction counts as incompressible. */
    static final double PROBE_RATIO = 0.97;

    /**
     * Whether a chunk is not worth compressing: three samples (start, middle, end) of
     * {@link #PROBE_BYTES} compressed at zstd level 1 all stay above {@link #PROBE_RATIO} of their
     * size. Already compressed or encrypted data (half of a typical disk image's used blocks, and
     * the whole of an encrypted volume) then costs a few microseconds instead of a full level-3
     * attempt (about 1 GB/s here, the largest single cost of a full backup of such data), and is
     * stored raw as zstd would have left it anyway. Chunks shorter than four samples are always tried.
     */
    static boolean looksIncompressible(ZstdCompressCtx ctx, byte[] raw) {
        if (raw.length < 4 * PROBE_BYTES) {
            return false;
        }
        byte[] sample = new byte[(int) Zstd.compressBound(PROBE_BYTES)];
        ctx.setLevel(1);
        try {
            for (int at : new int[] {0, raw.length / 2 - PROBE_BYTES / 2, raw.length - PROBE_BYTES}) {
                int n = ctx.compressByteArray(sample, 0, sample.length, raw, at, PROBE_BYTES);
                if (n < PROBE_BYTES * PROBE_RATIO) {
                    return false;
                }
            }
            return true;
        } finally {
            ctx.setLevel(ZSTD_LEVEL);
        }
    }

    private Ref appendLocked(Blob b, ByteBuffer blob) throws RepositoryException {
        Ref known = index.get(b.hash());
        if (known != null && known.kind() == b.kind()) {
            return known; // another thread stored it meanwhile
        }
        if (open == null) {
            open = openPack();
        }
        long at = open.positionBytes;
        writeFully(open, blob, at);
        open.positionBytes += blob.limit();
        Ref ref = new Ref(b.kind(), b.hash(), open.id, at, blob.limit());
        ByteBuffer entry = ByteBuffer.allocate(PackDescriptor.ENTRY_BYTES);
        b.hash().write(entry);
        entry.put((byte) b.kind()).put(blob.get(PackDescriptor.BLOB_COMP_OFFSET)).putShort((short) 0)
                .putInt((int) at).putInt(blob.limit());
        open.entries.add(entry.array());
        if (known == null) {
            index.put(b.hash(), ref);
        }
        newBytes.addAndGet(blob.limit());
        newBlobs.incrementAndGet();
        return ref;
    }

    /** Makes every blob put so far durable: seals the open pack, if any. */
    void seal() throws RepositoryException {
        lock.lock();
        try {
            sealLocked();
        } finally {
            lock.unlock();
        }
    }

    private OpenPack openPack() throws RepositoryException {
        PackId id = PackId.random();
        Path tmp = tmpDir.resolve(id + PackDescriptor.SUFFIX);
        try {
            FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
            OpenPack p = new OpenPack(id, tmp, ch);
            ByteBuffer header = ByteBuffer.allocate(PackDescriptor.HEADER_BYTES);
            header.putLong(PackDescriptor.PACK_MAGIC).putInt(PackDescriptor.VERSION).putInt(0).flip();
            writeFully(p, header, 0);
            p.positionBytes = PackDescriptor.HEADER_BYTES;
            return p;
        } catch (IOException e) {
            throw RepositoryException.io("cannot create pack " + tmp, e);
        }
    }

    private void sealLocked() throws RepositoryException {
        OpenPack p = open;
        if (p == null) {
            return;
        }
        open = null;
        ByteBuffer trailer = ByteBuffer.allocate(p.entries.size() * PackDescriptor.ENTRY_BYTES + PackDescriptor.FOOTER_BYTES);
        for (byte[] e : p.entries) {
            trailer.put(e);
        }
        CRC32C crc = new CRC32C();
        crc.update(trailer.array(), 0, trailer.position());
        trailer.putInt(p.entries.size()).putInt((int) crc.getValue()).putLong(p.positionBytes)
                .putLong(PackDescriptor.FOOTER_MAGIC).flip();
        Path target = packsDir.resolve(p.id + PackDescriptor.SUFFIX);
        try (FileChannel ch = p.ch) {
            writeFully(p, trailer, p.positionBytes);
            ch.force(true);
        } catch (IOException e) {
            throw RepositoryException.io("cannot seal pack " + p.tmp, e);
        }
        try {
            Files.move(p.tmp, target, StandardCopyOption.ATOMIC_MOVE);
            Durable.fsyncDirectory(packsDir);
        } catch (IOException e) {
            throw RepositoryException.io("cannot move pack " + p.tmp + " to " + target, e);
        }
    }

    private static void writeFully(OpenPack p, ByteBuffer buf, long positionBytes) throws RepositoryException {
        long pos = positionBytes;
        int length = buf.remaining();
        if (positionBytes + length > PackDescriptor.MAX_PACK_BYTES) {
            throw new IllegalStateException("pack " + p.id + " would pass " + PackDescriptor.MAX_PACK_BYTES + " bytes");
        }
        try {
            while (buf.hasRemaining()) {
                pos += p.ch.write(buf, pos);
            }
        } catch (IOException e) {
            throw RepositoryException.io("cannot write " + length + " bytes at offset " + positionBytes + " of " + p.tmp, e);
        }
    }

    /** Closes the open pack without sealing it: its blobs are lost (the file stays in tmp/ for the next writer to remove). */
    @Override
    public void close() {
        ZstdCompressCtx ctx;
        while ((ctx = contexts.poll()) != null) {
            ctx.close();
        }
        lock.lock();
        try {
            if (open != null) {
                try {
                    open.ch.close();
                } catch (IOException e) {
                    // nothing refers to an unsealed pack; the next writer removes it
                }
                open = null;
            }
        } finally {
            lock.unlock();
        }
    }
}
