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

    /**
     * Whether this client may see export {@code name} in {@code NBD_OPT_LIST} and open it. A client
     * that may not gets exactly what it would get for an export that does not exist
     * ({@code NBD_REP_ERR_UNKNOWN} with the same message), so it cannot learn that the name exists.
     * Called before {@link #open} and for each export {@link #list} returns.
     *
     * @param name   the export name (the default export's name when the client asked for the empty name)
     * @param client who is asking; under TLS, with the verified certificate subject if any
     * @return true by default: every client may use every export
     */
    default boolean allows(String name, NbdClient client) {
        return true;
    }

    /** The export a client gets when it asks for the empty name, or null for none. */
    default String defaultExportName() {
        return null;
    }
}
