package org.blksnap.nbd;

/**
 * Counters of one export since the server started, summed over all its connections.
 *
 * @param connections       connections that entered transmission on this export
 * @param activeConnections connections currently in transmission
 * @param requests          requests received (every command but DISC)
 * @param errors            requests answered with an error
 * @param bytesRead         bytes returned by READ
 * @param bytesWritten      bytes accepted by WRITE
 */
public record ExportStats(long connections, long activeConnections, long requests, long errors, long bytesRead,
                          long bytesWritten) {
}
