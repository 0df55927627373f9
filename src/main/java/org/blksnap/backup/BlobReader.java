package org.blksnap.backup;

import com.github.luben.zstd.ZstdDecompressCtx;
import com.github.luben.zstd.ZstdException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;

/**
 * Reads blobs by {@link Ref}: the blob's header must match the ref, its payload must (in an
 * encrypted repository) authenticate and decrypt under the key, decompress to the raw length,
 * and the raw bytes must hash to the ref's name, else that copy is not the blob. One byte-range
 * read of the store per blob (or per run of adjacent blobs).
 *
 * <p>A ref's pack and offset are a hint (format version 4: gc moves blobs; a damaged copy may have
 * a good one elsewhere): when the pack is gone, or the copy there is not the named blob, the other
 * copies the repository's index objects list are tried ({@link BlobLocator}, loaded on the first
 * such miss only); the read fails with {@link RepositoryException.Code#DAMAGED}, naming the ref's
 * pack and offset and why, only when no copy is good.
 *
 * <p>Thread-safe (the store, the key and the locator are).
 */
final class BlobReader {
    private final ObjectStore store;
    private final RepositoryKey key;
    private final BlobLocator locator;
    /** The host whose index objects are looked at first on a miss ({@link #forHost}), or null. */
    private final String host;

    /**
     * Decompression contexts for reuse: making one per blob cost a restore 3 % of its CPU (a profile:
     * ZSTD_createDCtx). At most as many as threads decode at once.
     */
    private final java.util.concurrent.ConcurrentLinkedQueue<ZstdDecompressCtx> decompressors;

    /** Told of each copy of a blob found damaged where it lies (not of a pack that is gone: blobs move). */
    @FunctionalInterface
    interface DamageSink {
        /** Called from the reading thread; {@code why} names the copy and what is wrong. */
        void damaged(Ref copy, RepositoryException why);
    }

    /** @param key the key of an encrypted repository (every blob sealed), or null (none sealed) */
    BlobReader(ObjectStore store, RepositoryKey key) {
        this(store, key, new BlobLocator(store), null, new java.util.concurrent.ConcurrentLinkedQueue<>());
    }

    private BlobReader(ObjectStore store, RepositoryKey key, BlobLocator locator, String host,
                       java.util.concurrent.ConcurrentLinkedQueue<ZstdDecompressCtx> decompressors) {
        this.store = store;
        this.key = key;
        this.locator = locator;
        this.host = host;
        this.decompressors = decompressors;
    }

    /**
     * This reader (the same locator and decompression contexts) for blobs of points of
     * {@code host}: a miss looks at that host's index objects first ({@link BlobLocator#others}),
     * where gc lists what it moved out of that host's packs, and at every index object only when
     * they do not answer. {@code host} "" (a version 1 point) or null: every index object at once.
     */
    BlobReader forHost(String host) {
        return new BlobReader(store, key, locator, host == null || host.isEmpty() ? null : host, decompressors);
    }

    /** The raw bytes of the blob {@code ref} names, checked against its name (see the class comment). */
    byte[] read(Ref ref) throws RepositoryException {
        return read(ref, null);
    }

    /**
     * {@link #read(Ref)}, telling {@code sink} (may be null) of every damaged copy met on the way,
     * also when a good copy is then found elsewhere.
     */
    byte[] read(Ref ref, DamageSink sink) throws RepositoryException {
        if (ref.isHole()) {
            throw new IllegalArgumentException("ref is a hole: it has no blob");
        }
        RepositoryException first;
        try {
            ByteBuffer blob = fetch(ref);
            if (blob != null) {
                return decode(ref, blob, 0);
            }
            first = damaged(ref, "its pack is missing");
        } catch (RepositoryException e) {
            if (e.code() != RepositoryException.Code.DAMAGED) {
                throw e;
            }
            first = e;
            if (sink != null) {
                sink.damaged(ref, e);
            }
        }
        return relocate(ref, first, sink);
    }

    /**
     * The blob from another copy the index objects list; {@code first} (what was wrong at the
     * ref's place) when none is good.
     */
    private byte[] relocate(Ref ref, RepositoryException first, DamageSink sink) throws RepositoryException {
        java.util.Set<Ref> tried = new java.util.HashSet<>();
        tried.add(ref);
        while (true) {
            List<Ref> others = locator.others(ref.hash(), ref.kind(), tried, host);
            if (others.isEmpty()) {
                throw new RepositoryException(first.code(), first.getMessage()
                        + (tried.size() == 1 ? "; the repository's index lists no other copy"
                        : "; nor is any of the " + (tried.size() - 1) + " other cop" + (tried.size() == 2 ? "y" : "ies")
                        + " the repository's index lists good"), first);
            }
            for (Ref copy : others) {
                tried.add(copy);
                try {
                    ByteBuffer blob = fetch(copy);
                    if (blob != null) {
                        return decode(copy, blob, 0);
                    }
                } catch (RepositoryException e) {
                    if (e.code() != RepositoryException.Code.DAMAGED) {
                        throw e;
                    }
                    if (sink != null) {
                        sink.damaged(copy, e);
                    }
                }
            }
        }
    }

    /**
     * The stored bytes of the copy at {@code ref}'s place, or null when its pack is gone.
     *
     * @throws RepositoryException DAMAGED the pack ends before the blob; IO
     */
    private ByteBuffer fetch(Ref ref) throws RepositoryException {
        String key = RepositoryLayout.packKey(ref.pack());
        ByteBuffer blob;
        try {
            blob = store.read(key, ref.offsetBytes(), ref.lengthBytes());
        } catch (RepositoryException e) {
            if (e.code() == RepositoryException.Code.NOT_FOUND) {
                return null;
            }
            throw e;
        }
        if (blob.remaining() < ref.lengthBytes()) {
            throw damaged(ref, "the pack ends before the blob (" + store.describe(key) + " ends at "
                    + (ref.offsetBytes() + blob.remaining()) + ")");
        }
        return blob;
    }

    /**
     * The stored blobs (header and payload, as they lie in the pack) at exactly the places of
     * {@code run} (blobs of one pack, one after the other: {@link #adjacent}), read with one request
     * and each checked to decode to its named blob; for gc, which copies blobs without decoding
     * them again. No other copy is tried.
     *
     * @throws RepositoryException DAMAGED (also: the pack is gone) naming the blob, or IO
     */
    List<ByteBuffer> readStoredExactly(List<Ref> run) throws RepositoryException {
        Ref first = run.getFirst();
        Ref last = run.getLast();
        Ref span = new Ref(first.kind(), first.hash(), first.pack(), first.offsetBytes(),
                (int) (last.offsetBytes() + last.lengthBytes() - first.offsetBytes()));
        ByteBuffer all = fetch(span);
        if (all == null) {
            throw damaged(first, "its pack is missing");
        }
        List<ByteBuffer> out = new java.util.ArrayList<>(run.size());
        for (Ref r : run) {
            int at = (int) (r.offsetBytes() - first.offsetBytes());
            decode(r, all, at);
            out.add(all.slice(all.position() + at, r.lengthBytes()));
        }
        return out;
    }

    /** The blob at {@code at} bytes past {@code buf}'s position, decoded where it lies (no copy of it first). */
    private byte[] decode(Ref ref, ByteBuffer buf, int at) throws RepositoryException {
        if (buf.hasArray()) {
            return decode(ref, buf.array(), buf.arrayOffset() + buf.position() + at);
        }
        byte[] one = new byte[ref.lengthBytes()];
        buf.get(buf.position() + at, one);
        return decode(ref, one, 0);
    }

    /**
     * The raw bytes of blobs stored one after the other in one pack ({@link #adjacent}), read with
     * one request of the store (a byte range on S3), each checked as {@link #read} checks it. When
     * the run's pack is gone or a blob of it is not good, each blob is read on its own, with
     * {@link #read}'s fallback to other copies.
     */
    List<byte[]> readRun(List<Ref> run) throws RepositoryException {
        if (run.size() == 1) {
            return List.of(read(run.getFirst()));
        }
        Ref first = run.getFirst();
        Ref last = run.getLast();
        long length = last.offsetBytes() + last.lengthBytes() - first.offsetBytes();
        String key = RepositoryLayout.packKey(first.pack());
        ByteBuffer all;
        try {
            all = store.read(key, first.offsetBytes(), (int) length);
        } catch (RepositoryException e) {
            if (e.code() != RepositoryException.Code.NOT_FOUND) {
                throw e;
            }
            all = null;
        }
        List<byte[]> out = new java.util.ArrayList<>(run.size());
        if (all != null) {
            try {
                for (Ref r : run) {
                    int at = (int) (r.offsetBytes() - first.offsetBytes());
                    if (all.remaining() < at + r.lengthBytes()) {
                        throw damaged(r, "the pack ends before the blob (" + store.describe(key) + ")");
                    }
                    out.add(decode(r, all, at));
                }
                return out;
            } catch (RepositoryException e) {
                if (e.code() != RepositoryException.Code.DAMAGED) {
                    throw e;
                }
            }
        }
        out.clear();
        for (Ref r : run) {
            out.add(read(r));
        }
        return out;
    }

    /** Whether {@code next} starts where {@code prev} ends in the same pack (one read can fetch both). */
    static boolean adjacent(Ref prev, Ref next) {
        return prev.pack().equals(next.pack()) && prev.offsetBytes() + prev.lengthBytes() == next.offsetBytes();
    }

    /** The blob that lies in {@code a} from {@code off} for {@code ref.lengthBytes()} bytes. */
    private byte[] decode(Ref ref, byte[] a, int off) throws RepositoryException {
        ByteBuffer blob = ByteBuffer.wrap(a, off, ref.lengthBytes()).slice();
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
        int flags = blob.get(PackDescriptor.BLOB_FLAGS_OFFSET) & 0xff;
        // the stored payload: in place in the pack's bytes, or opened (decrypted) into an array of its own
        byte[] stored;
        int storedAt;
        if (key == null) {
            if (flags != 0) {
                throw damaged(ref, "the blob is sealed (encrypted), in a repository that is not encrypted");
            }
            stored = a;
            storedAt = off + PackDescriptor.BLOB_HEADER_BYTES;
        } else {
            if (flags != PackDescriptor.FLAG_SEALED) {
                throw damaged(ref, "the blob is not sealed, in an encrypted repository");
            }
            try {
                stored = key.open(a, off, PackDescriptor.BLOB_HEADER_BYTES, a, off + PackDescriptor.BLOB_HEADER_BYTES,
                        storedLength);
            } catch (java.security.GeneralSecurityException e) {
                throw damaged(ref, "it does not authenticate under the repository's key (tampered or damaged)");
            }
            storedAt = 0;
            storedLength = stored.length;
        }
        byte[] raw;
        if (comp == PackDescriptor.COMP_NONE) {
            if (rawLength != storedLength) {
                throw damaged(ref, "an uncompressed blob of raw length " + rawLength + " stores " + storedLength);
            }
            raw = storedAt == 0 && stored.length == storedLength ? stored
                    : Arrays.copyOfRange(stored, storedAt, storedAt + storedLength);
        } else if (comp == PackDescriptor.COMP_ZSTD) {
            raw = new byte[rawLength];
            ZstdDecompressCtx ctx = decompressors.poll();
            if (ctx == null) {
                ctx = new ZstdDecompressCtx();
            }
            int n;
            try {
                n = ctx.decompressByteArray(raw, 0, rawLength, stored, storedAt, storedLength);
            } catch (ZstdException | IllegalArgumentException e) {
                ctx.close(); // its state after a failure is not worth keeping
                throw damaged(ref, "zstd: " + e.getMessage());
            }
            decompressors.offer(ctx);
            if (n != rawLength) {
                throw damaged(ref, "decompressed to " + n + " bytes, not " + rawLength);
            }
        } else {
            throw damaged(ref, "unknown compression " + comp);
        }
        if (!(key == null ? Sha256.of(raw) : key.name(raw)).equals(ref.hash())) {
            throw damaged(ref, "its content does not hash to its name");
        }
        return raw;
    }

    private static RepositoryException damaged(Ref ref, String why) {
        return new RepositoryException(RepositoryException.Code.DAMAGED, ref + ": " + why);
    }
}
