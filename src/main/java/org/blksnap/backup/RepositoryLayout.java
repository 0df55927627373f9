package org.blksnap.backup;

/**
 * Layout of a repository directory, format version {@link #VERSION}. Readers need nothing but the
 * files below; there is no repository-wide index to keep consistent.
 *
 * <pre>
 * REPO/
 *   config                  "blksnap-backup-repository\nversion 1\nid &lt;uuid&gt;\n"   written once, atomically
 *   lock                    OS lock (fcntl) held by the one writer; text: "pid N" and, while a
 *                           backup holds a snapshot, "snapshot &lt;uuid&gt;" and "storage &lt;dir&gt;"
 *   packs/&lt;32 hex&gt;.pack    sealed packs (PackDescriptor): immutable, complete
 *   points/&lt;id&gt;.point      manifests (ManifestDescriptor): a point exists iff its manifest does
 *   tmp/                    packs and manifests being written; the next writer empties it
 * </pre>
 *
 * Commit order of a point: its chunks and nodes go into packs; every pack it needs is sealed
 * (fsync, rename, fsync of packs/); its manifest is written to tmp/, fsynced and renamed into
 * points/ (fsync of points/). A writer killed at any moment leaves only unsealed packs in tmp/
 * and, at worst, sealed packs no point uses yet (reused by the next backup, removable by gc).
 */
final class RepositoryLayout {
    private RepositoryLayout() {
    }

    static final int VERSION = 1;
    static final String CONFIG = "config";
    static final String CONFIG_MAGIC = "blksnap-backup-repository";
    static final String LOCK = "lock";
    static final String PACKS = "packs";
    static final String POINTS = "points";
    static final String TMP = "tmp";
    /** Largest config file read, in bytes. */
    static final int MAX_CONFIG_BYTES = 4096;
}
