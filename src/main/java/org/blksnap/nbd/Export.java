package org.blksnap.nbd;

import java.util.List;
import org.blksnap.engine.BlockDevice;

/**
 * One export as seen by one connection: a block device plus how to announce it.
 *
 * <p>Obtained from {@link ExportProvider#open(String)}; the server calls {@link #close()} exactly
 * once when it no longer uses it (end of the connection, or after answering an INFO option). The
 * device is used from many virtual threads concurrently (requests are processed in parallel, and
 * several connections may share one device); it must be thread-safe, which every
 * {@link BlockDevice} is.
 *
 * <p>Errors from the device map to NBD errors: {@link org.blksnap.engine.BlksnapException}
 * by {@code NbdTransmissionDescriptor.errorOf}, {@link java.io.IOException} to
 * {@code NBD_EIO}, {@link IllegalArgumentException} to {@code NBD_EINVAL}.
 */
public interface Export extends AutoCloseable {

    /** The canonical export name (sent as {@code NBD_INFO_NAME}). */
    String name();

    /** A human-readable description (sent as {@code NBD_INFO_DESCRIPTION} when not empty). */
    default String description() {
        return "";
    }

    /** The device served; its size is the export size. */
    BlockDevice device();

    /** Whether writes, TRIM and WRITE_ZEROES are refused with {@code NBD_EPERM}. */
    default boolean readOnly() {
        return false;
    }

    /**
     * Whether all connections to this export share one device, so that a FLUSH on any connection
     * covers writes acknowledged on every connection ({@code NBD_FLAG_CAN_MULTI_CONN}).
     */
    default boolean multiConn() {
        return true;
    }

    /** Minimum block size in bytes: 1 or a power of two up to 65536; requests not aligned to it get EINVAL. */
    default int minimumBlockBytes() {
        return 1;
    }

    /** Preferred block size in bytes: a power of two, at least 512 and at least the minimum. */
    default int preferredBlockBytes() {
        return Math.max(4096, Integer.highestOneBit(Math.max(1, device().minimumIoBytes())));
    }

    /** Largest READ / WRITE payload in bytes; at least the preferred size, at most 32 MiB. */
    default int maximumPayloadBytes() {
        return NbdTransmissionDescriptor.MAX_PAYLOAD_BYTES;
    }

    /**
     * Whether structured READs of at least {@link NbdServer.Config#holeDetectionMinBytes()} consult
     * {@link BlockDevice#mapAllocation} and send unallocated ranges as {@code OFFSET_HOLE} chunks
     * (no zeros on the wire). Worth it only where the allocation map is cheap, e.g. the in-memory
     * chunk map of a snapshot image; not for files on tmpfs, where SEEK_HOLE scans the page cache
     * up to the next hole (milliseconds per request on a large allocated file). Default false.
     */
    default boolean sparseReads() {
        return false;
    }

    /**
     * The names of all metadata contexts this export offers besides {@code base:allocation}, e.g.
     * {@code qemu:dirty-bitmap:backup-1}. Used by the default {@link #listMetaContexts(String)}.
     */
    default List<String> metaContextNames() {
        return List.of();
    }

    /**
     * Answers one query of {@code NBD_OPT_LIST_META_CONTEXT} (never called for the {@code base:}
     * namespace, which the server answers). An empty query means "everything"; a query ending in
     * {@code ':'} (e.g. {@code qemu:} or {@code qemu:dirty-bitmap:}) is a prefix wildcard;
     * anything else is an exact name. The default filters {@link #metaContextNames()} that way.
     *
     * @return matching context names, possibly none
     */
    default List<String> listMetaContexts(String query) {
        return metaContextNames().stream()
                .filter(n -> query.isEmpty() || n.equals(query) || (query.endsWith(":") && n.startsWith(query)))
                .toList();
    }

    /**
     * Resolves an exact context name of {@code NBD_OPT_SET_META_CONTEXT} (never one in the
     * {@code base:} namespace).
     *
     * @return the context, or null if this export has no such context (it is then not selected)
     */
    default MetaContext resolveMetaContext(String name) {
        return null;
    }

    /** Releases what {@link ExportProvider#open(String)} acquired. Must not throw. Default: nothing. */
    @Override
    default void close() {
    }
}
