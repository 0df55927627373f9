package org.blksnap.backup;

import java.nio.charset.StandardCharsets;
import java.util.LinkedHashSet;
import java.util.Set;

/**
 * The copies of blobs {@code verify} found damaged, {@code damaged/<64 hex: the blob's name>}: one
 * line per damaged copy, {@code <pack id> <offset> <length>\n} (decimal bytes). Writers leave these
 * copies out of what they deduplicate against, so the next backup of the same content stores a good
 * copy, which readers then find for the old points too ({@link BlobLocator}); gc never keeps a
 * damaged copy when a good one exists, and removes the record once the copy's pack is gone.
 * Stateless; the objects are written whole (a second verify of the same blob merges its lines).
 */
final class DamagedCopies {
    private DamagedCopies() {
    }

    /** Largest record read, in bytes (a blob with hundreds of damaged copies). */
    static final int MAX_RECORD_BYTES = 64 << 10;

    static String key(Sha256 hash) {
        return RepositoryLayout.DAMAGED + "/" + hash.hex();
    }

    /**
     * Every recorded damaged copy, as refs (kind unknown: {@link NodeDescriptor#KIND_CHUNK}; compare
     * with {@link #sameCopy}). A record that does not parse is skipped.
     */
    static Set<Ref> load(ObjectStore objects) throws RepositoryException {
        Set<Ref> copies = new LinkedHashSet<>();
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.DAMAGED + "/")) {
            try {
                copies.addAll(parse(e.key(), objects.get(e.key(), MAX_RECORD_BYTES)));
            } catch (RepositoryException x) {
                if (x.code() == RepositoryException.Code.IO) {
                    throw x;
                }
            }
        }
        return copies;
    }

    /** The damaged copies one record ({@code damaged/<hex>}) lists; empty when it is gone or does not parse. */
    static Set<Ref> loadOne(ObjectStore objects, String key) throws RepositoryException {
        try {
            return parse(key, objects.get(key, MAX_RECORD_BYTES));
        } catch (RepositoryException x) {
            if (x.code() == RepositoryException.Code.IO) {
                throw x;
            }
            return new LinkedHashSet<>();
        }
    }

    /** Whether {@code a} and {@code b} are the same copy (name, pack and offset; kinds aside). */
    static boolean sameCopy(Ref a, Ref b) {
        return a.hash().equals(b.hash()) && a.pack().equals(b.pack()) && a.offsetBytes() == b.offsetBytes();
    }

    /** The copy as {@link #load} keys it. */
    static Ref normal(Ref copy) {
        return new Ref(NodeDescriptor.KIND_CHUNK, copy.hash(), copy.pack(), copy.offsetBytes(), copy.lengthBytes());
    }

    private static Set<Ref> parse(String key, byte[] bytes) {
        Set<Ref> out = new LinkedHashSet<>();
        String name = key.substring(key.lastIndexOf('/') + 1);
        Sha256 hash;
        try {
            hash = Sha256.read(java.nio.ByteBuffer.wrap(java.util.HexFormat.of().parseHex(name)));
        } catch (RuntimeException e) {
            return out;
        }
        for (String line : new String(bytes, StandardCharsets.UTF_8).split("\n")) {
            String[] f = line.trim().split(" ");
            if (f.length != 3) {
                continue;
            }
            try {
                int length = Integer.parseInt(f[2]);
                if (length >= PackDescriptor.BLOB_HEADER_BYTES && length <= PackDescriptor.MAX_BLOB_BYTES) {
                    out.add(new Ref(NodeDescriptor.KIND_CHUNK, hash, PackId.parse(f[0]), Long.parseLong(f[1]), length));
                }
            } catch (RuntimeException e) {
                // not a copy: skipped
            }
        }
        return out;
    }

    /**
     * Records damaged copies of one blob (merged with what is recorded already).
     *
     * @return whether anything new was recorded
     */
    static boolean record(ObjectStore objects, Sha256 hash, Set<Ref> copies) throws RepositoryException {
        String key = key(hash);
        Set<Ref> all = new LinkedHashSet<>();
        try {
            all.addAll(parse(key, objects.get(key, MAX_RECORD_BYTES)));
        } catch (RepositoryException e) {
            if (e.code() == RepositoryException.Code.IO) {
                throw e;
            }
        }
        int before = all.size();
        for (Ref c : copies) {
            all.add(normal(c));
        }
        if (all.size() == before) {
            return false;
        }
        write(objects, key, all);
        return true;
    }

    /** Writes the record of one blob's damaged copies anew, or deletes it when {@code copies} is empty. */
    static void write(ObjectStore objects, String key, Set<Ref> copies) throws RepositoryException {
        if (copies.isEmpty()) {
            objects.delete(key);
            return;
        }
        StringBuilder sb = new StringBuilder();
        for (Ref c : copies) {
            sb.append(c.pack()).append(' ').append(c.offsetBytes()).append(' ').append(c.lengthBytes()).append('\n');
        }
        objects.put(key, sb.toString().getBytes(StandardCharsets.UTF_8));
    }
}
