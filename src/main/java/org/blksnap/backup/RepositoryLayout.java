package org.blksnap.backup;

/**
 * Layout of a repository, format version {@link #VERSION} (plain), {@link #VERSION_ENCRYPTED}
 * (encrypted) or {@link #VERSION_RELOCATABLE} (either, after gc moved blobs): objects under a
 * directory or an S3 prefix ({@link ObjectStore}). Readers need nothing but {@code config},
 * {@code points/} and {@code packs/} while every blob is where its ref says; a blob that is not
 * (version 4: moved by gc, or damaged there) is found by its name through {@code index/}.
 *
 * <pre>
 * REPO/
 *   config                         "blksnap-backup-repository\nversion 2\nid &lt;uuid&gt;\n"   written once;
 *                                  encrypted: version 3 and two more lines (CryptoDescriptor); the
 *                                  version line becomes "version 4" (nothing else changes) before gc
 *                                  first moves a blob a ref names or drops a copy of a live blob
 *   packs/&lt;32 hex&gt;.pack           sealed packs (PackDescriptor): immutable, complete, random names
 *   points/&lt;id&gt;.point             manifests (ManifestDescriptor): a point exists iff its manifest does
 *   index/&lt;host&gt;+&lt;point id&gt;.idx   the blobs the packs of the backup up to that point added
 *                                  (BlobIndexDescriptor): what other writers deduplicate against, and
 *                                  where readers find a blob by name
 *   index/&lt;host&gt;+gc-&lt;16 hex&gt;.idx  the packs a gc wrote with blobs moved out of that host's packs
 *                                  (upgrade-gc-*, gc-*: out of an upgrade's packs, or of packs no
 *                                  index object listed; -1, -2, ...: more of one gc run)
 *   sessions/&lt;session&gt;.start      a writer began (host, pid); its time is the store's
 *   sessions/&lt;session&gt;.beat       the writer is alive (rewritten every HEARTBEAT), with the snapshot
 *                                  and storage a backup holds
 *   gc/lock-&lt;id&gt;                  a running gc (one at a time)
 *   gc/condemned-&lt;id&gt;             packs to remove: unused, or repacked (one pack id a line)
 *   damaged/&lt;64 hex&gt;              copies of the blob of that name verify found damaged (DamagedCopies)
 *   tmp/                           (directory only) objects being written, named by their writer
 *   lock                           (version 1 only; ignored since) the one writer's fcntl lock
 * </pre>
 *
 * Commit order of a point: its chunks and nodes go into packs; every pack it needs is sealed
 * (fsync and rename, or a completed S3 upload); the index object of the packs sealed since the
 * writer's previous point is written; then the manifest. A writer killed at any moment leaves at
 * worst sealed packs no point uses, which {@code gc} removes. The rules that let several writers
 * and gc share a repository without a lock are in {@link GarbageCollector} and docs/repository.md.
 */
final class RepositoryLayout {
    private RepositoryLayout() {
    }

    static final int VERSION = 2;
    /**
     * An encrypted repository (CryptoDescriptor): version 2's layout with sealed blob payloads and
     * manifests and keyed blob names; a blksnap that reads only versions 1 and 2 refuses it.
     */
    static final int VERSION_ENCRYPTED = 3;
    /**
     * Version 2 or 3 (encrypted when the config has the lines of version 3) where a ref's pack and
     * offset are a hint: gc has moved live blobs out of mostly unused packs, or dropped duplicate
     * or damaged copies, and readers find a blob that is not at its ref's place by its name through
     * the index objects ({@link BlobLocator}). gc makes a repository version 4 before it first does
     * so ({@link Repository#allowRelocation}); versions 2 and 3 are still read and written as before.
     */
    static final int VERSION_RELOCATABLE = 4;
    /** Version 1 repositories (one writer, no index objects) are read, and upgraded by the first writer. */
    static final int VERSION_1 = 1;
    static final String CONFIG = "config";
    static final String CONFIG_MAGIC = "blksnap-backup-repository";
    static final String LOCK = "lock";
    static final String PACKS = "packs";
    static final String POINTS = "points";
    static final String INDEX = "index";
    static final String SESSIONS = "sessions";
    static final String GC = "gc";
    static final String TMP = "tmp";
    /** Damaged copies verify found ({@link DamagedCopies}): {@code damaged/<64 hex>}. */
    static final String DAMAGED = "damaged";
    static final String INDEX_SUFFIX = ".idx";
    static final String START_SUFFIX = ".start";
    static final String BEAT_SUFFIX = ".beat";
    static final String GC_LOCK_PREFIX = GC + "/lock-";
    static final String CONDEMNED_PREFIX = GC + "/condemned-";
    /** Largest config, session or lock object read, in bytes. */
    static final int MAX_CONFIG_BYTES = 4096;
    /** Largest index object read, in bytes (a few million blobs). */
    static final int MAX_INDEX_BYTES = 256 << 20;
    /** Largest condemned list read, in bytes (33 bytes a pack: 8 million packs). */
    static final int MAX_CONDEMNED_BYTES = 256 << 20;

    static String packKey(PackId id) {
        return PACKS + "/" + id + PackDescriptor.SUFFIX;
    }

    static String pointKey(String pointId) {
        return POINTS + "/" + pointId + ManifestDescriptor.SUFFIX;
    }

    static String indexKey(String name) {
        return INDEX + "/" + name + INDEX_SUFFIX;
    }
}
