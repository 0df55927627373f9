package org.blksnap.nbd;

import java.util.List;

/**
 * The exports an {@link NbdServer} serves; implemented by the daemon.
 *
 * <p>Called from connection threads (virtual threads), possibly concurrently: implementations
 * must be thread-safe. The server never caches answers: every {@code NBD_OPT_LIST} calls
 * {@link #list()}, every {@code NBD_OPT_INFO}, {@code NBD_OPT_GO}, {@code NBD_OPT_EXPORT_NAME}
 * and meta-context option calls {@link #open(String)}, so exports may come and go at any time.
 */
public interface ExportProvider {

    /** The exports to announce for {@code NBD_OPT_LIST}, in the order to announce them. */
    List<ExportInfo> list();

    /**
     * Opens an export for one connection (or for one INFO / LIST_META_CONTEXT option).
     *
     * <p>The server calls {@link Export#close()} on the result when the connection ends or the
     * option is answered. An empty name (the client asked for the default export) is replaced by
     * {@link #defaultExportName()} before this call, when that is not null.
     *
     * @param name the export name the client asked for, at most 4096 bytes of UTF-8
     * @return the export, or null if there is no such export (the client gets
     *         {@code NBD_REP_ERR_UNKNOWN}, or is disconnected after {@code NBD_OPT_EXPORT_NAME})
     * @throws RuntimeException if the export exists but cannot be opened now; the client gets
     *         {@code NBD_REP_ERR_UNKNOWN} with the exception's message
     */
    Export open(String name);

    /** The export a client gets when it asks for the empty name, or null for none. */
    default String defaultExportName() {
        return null;
    }
}
