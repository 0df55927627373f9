package org.blksnap.backup;

import com.github.luben.zstd.Zstd;
import com.github.luben.zstd.ZstdCompressCtx;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import java.util.zip.CRC32C;

/**
 * The writing side of the repository's content-addressed store: {@link #put} stores a blob once
 * (named by the SHA-256 of its raw bytes) in the open pack, or returns where it already is. Blobs
 * are zstd-compressed outside the lock (stored raw when that does not shrink them), then appended
 * under it; a pack that reaches {@link PackDescriptor#TARGET_PACK_BYTES} is sealed: its trailer is
 * appended and its upload completed ({@link ObjectStore.Upload#complete}: fsync and rename on a
 * directory, the last part and the completion of a multipart upload on S3) on a background thread,
 * at most {@link #SEALING} at once, while the next pack fills. Refs to blobs of a pack are only
 * durable after {@link #seal}, which a point's manifest must wait for.
 *
 * <p>Thread-safe: any number of threads may {@link #put} at once; a blob put by two threads at
 * once is stored once. {@link #seal} and {@link #close} may be called from any thread.
 */
final class ChunkStore implements AutoCloseable {
    /** zstd level: 3 is zstd's default, the best ratio for its speed on disk data. */
    static final int ZSTD_LEVEL = 3;

    /** Packs being completed in the background at once (each may hold a part buffer of the store). */
    static final int SEALING = 2;

    private final ObjectStore objects;
    private final String writerTag;
    private final long targetPackBytes;
    /** The key of an encrypted repository, or null; {@link #keyId}: this writer's key id under it. */
    private final RepositoryKey key;
    private final RepositoryKey.KeyId keyId;
    private final Semaphore sealing = new Semaphore(SEALING);
    private final ExecutorService sealers = Executors.newVirtualThreadPerTaskExecutor();
    /** The refs the writer loaded ({@link WriterIndex}): read only here, possibly shared with other stores and growing. */
    private final Map<Sha256, Ref> known;
    /** The refs of the blobs this store appended (its readers look up and add concurrently). */
    private final Map<Sha256, Ref> added = new ConcurrentHashMap<>();
    private final ReentrantLock lock = new ReentrantLock();
    private final AtomicLong newBytes = new AtomicLong();
    private final AtomicLong newBlobs = new AtomicLong();
    /** zstd contexts reused across puts (one costs an allocation of native memory); at most one per thread at a time. */
    private final java.util.concurrent.ConcurrentLinkedQueue<ZstdCompressCtx> contexts = new java.util.concurrent.ConcurrentLinkedQueue<>();
    // guarded by lock
    private OpenPack open;
    // guarded by lock: the first failure of a pack write; every later put and seal throws it
    private RepositoryException broken;
    // guarded by lock: completions not yet awaited, and packs sealed since the last drainSealed
    private final List<CompletableFuture<Void>> pending = new ArrayList<>();
    private final List<SealedPack> sealed = new ArrayList<>();

    private static final class OpenPack {
        final PackId id;
        final ObjectStore.Upload upload;
        final List<byte[]> entries = new ArrayList<>();
        long positionBytes;

        OpenPack(PackId id, ObjectStore.Upload upload) {
            this.id = id;
            this.upload = upload;
        }
    }

    /** A pack this store sealed: its id and its trailer entries ({@link PackDescriptor}, 44 bytes each). */
    record SealedPack(PackId id, List<byte[]> entries) {
    }

    /**
     * @param known     the refs of every blob this writer may reuse ({@link WriterIndex}); read,
     *                  never written: the store keeps what it appends in a map of its own, so the
     *                  loaded refs can be shared between the jobs of a process
     *                  ({@link WriterIndexCache}); a map others add to must be thread-safe for reads
     * @param writerTag names this writer in unfinished uploads ({@link ObjectStore#create})
     * @param key       the key of an encrypted repository (payloads sealed, names keyed), or null
     */
    ChunkStore(ObjectStore objects, String writerTag, Map<Sha256, Ref> known, long targetPackBytes, RepositoryKey key) {
        this.objects = objects;
        this.key = key;
        this.keyId = key == null ? null : key.newKeyId();
        this.writerTag = writerTag;
        this.known = known;
        this.targetPackBytes = targetPackBytes;
    }

    /** The ref of a blob named {@code hash} this store appended or the writer loaded, or null. */
    private Ref lookup(Sha256 hash) {
        Ref r = added.get(hash);
        return r != null ? r : known.get(hash);
    }

    /** Bytes appended to packs by this store (blob headers included), so far. */
    long newBytes() {
        return newBytes.get();
    }

    /** Blobs appended by this store, so far. */
    long newBlobs() {
        return newBlobs.get();
    }

    /**
     * The name of a blob of these raw bytes: their SHA-256, or in an encrypted repository their
     * HMAC-SHA-256 under the key's names key (the store then learns no content hashes).
     */
    Sha256 name(byte[] raw) {
        return key == null ? Sha256.of(raw) : key.name(raw);
    }

    /** A blob to store: its kind, name ({@link #name}) and raw bytes. */
    record Blob(int kind, Sha256 hash, byte[] raw) {
    }

    /**
     * Stores {@code raw} as a blob of {@code kind} unless a blob of that name and kind exists.
     *
     * @param hash the {@link #name} of {@code raw} (the caller computed it to name the chunk)
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
        ByteBuffer[][] encoded = new ByteBuffer[blobs.size()][];
        for (int i = 0; i < refs.length; i++) {
            Blob b = blobs.get(i);
            Ref found = lookup(b.hash());
            if (found != null && found.kind() == b.kind()) {
                refs[i] = found;
            } else {
                encoded[i] = encode(b);
            }
        }
        lock.lock();
        try {
            if (broken != null) {
                throw broken;
            }
            try {
                for (int i = 0; i < refs.length; i++) {
                    if (refs[i] == null) {
                        refs[i] = appendLocked(blobs.get(i), encoded[i]);
                    }
                }
                if (open != null && open.positionBytes >= targetPackBytes) {
                    sealLocked();
                }
            } catch (RepositoryException | RuntimeException e) {
                throw breakLocked(e);
            }
            return refs;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Appends a blob exactly as it is stored elsewhere (its 48-byte header and payload: gc's
     * repack), unless this store holds a blob of that name and kind already. Nothing is compressed
     * again; a sealed payload is copied sealed, for its associated data is its header (type,
     * compression, lengths, name), not its pack or offset (CryptoDescriptor).
     *
     * @param stored the blob from its position to its limit; not modified
     * @return where the copy is; durable once {@link #seal} returns
     */
    Ref putStored(int kind, Sha256 hash, ByteBuffer stored) throws RepositoryException {
        lock.lock();
        try {
            if (broken != null) {
                throw broken;
            }
            try {
                Ref ref = appendLocked(new Blob(kind, hash, null), new ByteBuffer[] {stored.slice()});
                if (open != null && open.positionBytes >= targetPackBytes) {
                    sealLocked();
                }
                return ref;
            } catch (RepositoryException | RuntimeException e) {
                throw breakLocked(e);
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * The first failure of a write to the open pack (a full filesystem, say) leaves the pack in an
     * unknown state: every later put and seal fails with that same first error, so the backup
     * reports what went wrong, not a consequence of it (another writer thread finding the pack
     * shorter than it expects).
     */
    private RepositoryException breakLocked(Exception e) {
        if (broken == null) {
            broken = e instanceof RepositoryException r ? r
                    : new RepositoryException(RepositoryException.Code.IO, "writing a pack failed: " + e, e);
        }
        return broken;
    }

    /**
     * The blob as stored, in the buffers to append one after the other: header, then the payload
     * compressed straight behind it (no copy), or the header alone followed by the raw bytes
     * themselves when zstd does not shrink them or {@link #looksIncompressible} says it would not
     * (no copy of an incompressible chunk either). In an encrypted repository the payload is then
     * sealed in place ({@link CryptoDescriptor}: key id, nonce, ciphertext, tag; the header is its
     * associated data).
     */
    private ByteBuffer[] encode(Blob b) {
        byte[] raw = b.raw();
        if (raw.length > PackDescriptor.MAX_RAW_BYTES) {
            throw new IllegalArgumentException("raw.length (" + raw.length + ") must be <= " + PackDescriptor.MAX_RAW_BYTES);
        }
        if (key != null) {
            return new ByteBuffer[] {encodeSealed(b)};
        }
        int h = PackDescriptor.BLOB_HEADER_BYTES;
        Compressed c = compress(raw, h, 0);
        boolean useZstd = c != null;
        int payloadLength = useZstd ? c.length() : raw.length;
        ByteBuffer header = useZstd ? ByteBuffer.wrap(c.out(), 0, h + payloadLength) : ByteBuffer.allocate(h);
        header.putInt(PackDescriptor.BLOB_MAGIC).put((byte) b.kind())
                .put((byte) (useZstd ? PackDescriptor.COMP_ZSTD : PackDescriptor.COMP_NONE)).putShort((short) 0)
                .putInt(raw.length).putInt(payloadLength);
        b.hash().write(header);
        return useZstd ? new ByteBuffer[] {header.position(0)} : new ByteBuffer[] {header.flip(), ByteBuffer.wrap(raw)};
    }

    /**
     * {@link #encode} in an encrypted repository: the payload (compressed or raw) is written at
     * its place behind header, key id and nonce, then sealed in place (an incompressible chunk is
     * sealed straight from {@code raw}: no copy).
     */
    private ByteBuffer encodeSealed(Blob b) {
        byte[] raw = b.raw();
        int h = PackDescriptor.BLOB_HEADER_BYTES;
        int at = h + CryptoDescriptor.KEY_ID_BYTES + CryptoDescriptor.NONCE_BYTES;
        byte[] out = null;
        int plainLength = raw.length;
        Compressed c = compress(raw, at, CryptoDescriptor.TAG_BYTES);
        if (c != null) {
            out = c.out();
            plainLength = c.length();
        }
        boolean useZstd = out != null;
        if (!useZstd) {
            out = new byte[at + raw.length + CryptoDescriptor.TAG_BYTES];
        }
        int storedLength = plainLength + CryptoDescriptor.OVERHEAD_BYTES;
        ByteBuffer blob = ByteBuffer.wrap(out, 0, h + storedLength);
        blob.putInt(PackDescriptor.BLOB_MAGIC).put((byte) b.kind())
                .put((byte) (useZstd ? PackDescriptor.COMP_ZSTD : PackDescriptor.COMP_NONE))
                .put((byte) PackDescriptor.FLAG_SEALED).put((byte) 0)
                .putInt(raw.length).putInt(storedLength);
        b.hash().write(blob);
        int sealed = useZstd ? key.seal(keyId, out, 0, h, out, at, plainLength, out, h)
                : key.seal(keyId, out, 0, h, raw, 0, raw.length, out, h);
        assert sealed == storedLength;
        return blob.position(0);
    }

    /** A payload compressed into {@code out} at the offset asked for, {@code length} bytes long. */
    private record Compressed(byte[] out, int length) {
    }

    /**
     * {@code raw} compressed with zstd into a new array, at {@code at} and with {@code tail} spare
     * bytes after the largest possible payload; null when {@link #looksIncompressible} says it would
     * not shrink, or it did not.
     */
    private Compressed compress(byte[] raw, int at, int tail) {
        ZstdCompressCtx ctx = contexts.poll();
        if (ctx == null) {
            ctx = new ZstdCompressCtx().setLevel(ZSTD_LEVEL);
        }
        try {
            if (looksIncompressible(ctx, raw)) {
                return null;
            }
            byte[] out = new byte[at + (int) Zstd.compressBound(raw.length) + tail];
            int n = ctx.compressByteArray(out, at, out.length - at - tail, raw, 0, raw.length);
            return n < raw.length ? new Compressed(out, n) : null;
        } finally {
            contexts.offer(ctx);
        }
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

    /** Appends a blob given as consecutive buffers (the first holds its header; {@link #encode}). */
    private Ref appendLocked(Blob b, ByteBuffer[] blob) throws RepositoryException {
        Ref found = lookup(b.hash());
        if (found != null && found.kind() == b.kind()) {
            return found; // another thread stored it meanwhile
        }
        if (open == null) {
            open = openPack();
        }
        long at = open.positionBytes;
        byte comp = blob[0].get(blob[0].position() + PackDescriptor.BLOB_COMP_OFFSET);
        int length = 0;
        for (ByteBuffer part : blob) {
            int n = part.remaining();
            writeFully(open, part, at + length);
            length += n;
        }
        open.positionBytes += length;
        Ref ref = new Ref(b.kind(), b.hash(), open.id, at, length);
        ByteBuffer entry = ByteBuffer.allocate(PackDescriptor.ENTRY_BYTES);
        b.hash().write(entry);
        entry.put((byte) b.kind()).put(comp).putShort((short) 0).putInt((int) at).putInt(length);
        open.entries.add(entry.array());
        if (found == null) {
            added.put(b.hash(), ref);
        }
        newBytes.addAndGet(length);
        newBlobs.incrementAndGet();
        return ref;
    }

    /** Makes every blob put so far durable: seals the open pack, if any, and waits for every pack being completed. */
    void seal() throws RepositoryException {
        List<CompletableFuture<Void>> wait;
        lock.lock();
        try {
            if (broken != null) {
                throw broken;
            }
            try {
                sealLocked();
            } catch (RepositoryException | RuntimeException e) {
                throw breakLocked(e);
            }
            wait = new ArrayList<>(pending);
            pending.clear();
        } finally {
            lock.unlock();
        }
        RepositoryException first = null;
        for (CompletableFuture<Void> f : wait) {
            try {
                f.get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new RepositoryException(RepositoryException.Code.IO, "interrupted while packs were being stored", e);
            } catch (ExecutionException e) {
                if (first == null) {
                    first = e.getCause() instanceof RepositoryException r ? r
                            : new RepositoryException(RepositoryException.Code.IO, "storing a pack failed: " + e.getCause(), e.getCause());
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }

    /** The packs sealed since the last call (after {@link #seal}: all of them durable), for the writer's index object. */
    List<SealedPack> drainSealed() {
        lock.lock();
        try {
            List<SealedPack> out = List.copyOf(sealed);
            sealed.clear();
            return out;
        } finally {
            lock.unlock();
        }
    }

    private OpenPack openPack() throws RepositoryException {
        PackId id = PackId.random();
        OpenPack p = new OpenPack(id, objects.create(RepositoryLayout.packKey(id), writerTag));
        ByteBuffer header = ByteBuffer.allocate(PackDescriptor.HEADER_BYTES);
        header.putLong(PackDescriptor.PACK_MAGIC).putInt(key == null ? PackDescriptor.VERSION : PackDescriptor.VERSION_SEALED)
                .putInt(0).flip();
        writeFully(p, header, 0);
        p.positionBytes = PackDescriptor.HEADER_BYTES;
        return p;
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
        try {
            writeFully(p, trailer, p.positionBytes);
        } catch (RepositoryException e) {
            p.upload.abort();
            throw e;
        }
        sealed.add(new SealedPack(p.id, List.copyOf(p.entries)));
        sealing.acquireUninterruptibly(); // bounds the packs (and their buffers) being completed at once
        CompletableFuture<Void> done = new CompletableFuture<>();
        pending.add(done);
        sealers.execute(() -> {
            try {
                p.upload.complete();
                done.complete(null);
            } catch (RepositoryException | RuntimeException e) {
                p.upload.abort();
                done.completeExceptionally(e);
            } finally {
                sealing.release();
            }
        });
    }

    private static void writeFully(OpenPack p, ByteBuffer buf, long positionBytes) throws RepositoryException {
        int length = buf.remaining();
        if (positionBytes + length > PackDescriptor.MAX_PACK_BYTES) {
            throw new IllegalStateException("pack " + p.id + " would pass " + PackDescriptor.MAX_PACK_BYTES + " bytes");
        }
        if (p.upload.positionBytes() != positionBytes) {
            throw new IllegalStateException("pack " + p.id + " is appended at " + p.upload.positionBytes() + ", not " + positionBytes);
        }
        p.upload.write(buf);
    }

    /** Drops the open pack without sealing it (its blobs are lost) and waits for the packs being completed. */
    @Override
    public void close() {
        ZstdCompressCtx ctx;
        while ((ctx = contexts.poll()) != null) {
            ctx.close();
        }
        lock.lock();
        try {
            if (open != null) {
                open.upload.abort();
                open = null;
            }
        } finally {
            lock.unlock();
        }
        sealers.close();
    }
}
