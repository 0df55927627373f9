package org.blksnap.daemon;

import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.List;
import org.blksnap.ctrl.ControlServer;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.engine.Persistence;
import org.blksnap.nbd.NbdServer;

/**
 * Everything the daemon needs to start, resolved from flags, a config file and defaults.
 *
 * @param dataDir        the data directory (lock, sockets, default device)
 * @param devices        devices declared for this run (flags, config file, or the default disk0, 1 GiB,
 *                       in the data dir); never empty. Devices added at run time come from the data
 *                       directory's registry ({@link DeviceManager})
 * @param listen         the NBD TCP address, or null for none
 * @param nbdSocket      the NBD Unix socket, or null for none
 * @param controlSocket  the control API socket
 * @param params         module parameters as NAME=VALUE, applied in order
 * @param metrics        the Prometheus /metrics address, or null for none
 * @param readOnlyImages whether images are exported read-only
 * @param logLevel       root log level (ERROR, WARN, INFO, DEBUG, TRACE)
 * @param persistence    where change tracking is kept ({@link Persistence#NONE}: in memory only);
 *                       null means {@link #defaultPersistence} of the data directory
 * @param nbd            the NBD server's limits and timeouts (connections daemon-wide and per export, bytes in
 *                       flight per connection and daemon-wide, handshake/request/reply timeouts)
 * @param security       TLS, allow-lists per export and read-only exports of the NBD server
 *                       (null means {@link NbdSecurity#NONE})
 * @param controlGroup   a group whose members may use the control API besides root (the socket is then
 *                       0660 with that group), or null
 * @param allowPaths     directories in which callers of the control group may name files (storage,
 *                       devices, mount points to freeze); empty: none
 * @param maxControlConnections control API connections served at once (>= 1; 0 means
 *                       {@link ControlServer#DEFAULT_MAX_CONNECTIONS}); requests on further ones get EAGAIN
 */
public record DaemonConfig(Path dataDir, List<DeviceSpec> devices, InetSocketAddress listen, Path nbdSocket,
                           Path controlSocket, List<String> params, InetSocketAddress metrics, boolean readOnlyImages,
                           String logLevel, Persistence persistence, NbdServer.Config nbd, NbdSecurity security,
                           String controlGroup, List<Path> allowPaths, int maxControlConnections) {
    /** Default NBD TCP address. */
    public static final String DEFAULT_LISTEN = "127.0.0.1:10809";
    /** Default data directory, relative to the working directory. */
    public static final String DEFAULT_DATA_DIR = "blksnap-data";
    /** Size of the default device disk0. */
    public static final long DEFAULT_DEVICE_BYTES = 1L << 30;

    /** The state directory under the data directory. */
    public static final String STATE_DIR = "state";

    /**
     * A configuration with the default persistence (in {@code DATA_DIR/state}, default region and
     * interval) and the NBD server's default limits ({@link NbdServer.Config#defaults()}).
     */
    public DaemonConfig(Path dataDir, List<DeviceSpec> devices, InetSocketAddress listen, Path nbdSocket,
                        Path controlSocket, List<String> params, InetSocketAddress metrics, boolean readOnlyImages,
                        String logLevel) {
        this(dataDir, devices, listen, nbdSocket, controlSocket, params, metrics, readOnlyImages, logLevel, null,
                NbdServer.Config.defaults(), NbdSecurity.NONE, null, List.of());
    }

    /** As the canonical constructor, with the default limit on control connections. */
    public DaemonConfig(Path dataDir, List<DeviceSpec> devices, InetSocketAddress listen, Path nbdSocket,
                        Path controlSocket, List<String> params, InetSocketAddress metrics, boolean readOnlyImages,
                        String logLevel, Persistence persistence, NbdServer.Config nbd, NbdSecurity security,
                        String controlGroup, List<Path> allowPaths) {
        this(dataDir, devices, listen, nbdSocket, controlSocket, params, metrics, readOnlyImages, logLevel, persistence,
                nbd, security, controlGroup, allowPaths, 0);
    }

    /** Persistence in {@code dataDir/state} with the default region size and checkpoint interval. */
    public static Persistence defaultPersistence(Path dataDir) {
        return Persistence.in(dataDir.resolve(STATE_DIR));
    }

    public DaemonConfig {
        if (persistence == null) {
            persistence = defaultPersistence(dataDir);
        }
        if (security == null) {
            security = NbdSecurity.NONE;
        }
        if (maxControlConnections == 0) {
            maxControlConnections = ControlServer.DEFAULT_MAX_CONNECTIONS;
        }
        if (maxControlConnections < 0) {
            throw new BlksnapException(Errno.EINVAL, "--max-control-connections (" + maxControlConnections
                    + ") must be >= 1");
        }
        if (nbd == null) {
            nbd = NbdServer.Config.defaults();
        }
        devices = List.copyOf(devices);
        params = List.copyOf(params);
        allowPaths = List.copyOf(allowPaths);
        if (controlGroup != null && controlGroup.isBlank()) {
            controlGroup = null;
        }
        if (devices.isEmpty()) {
            throw new BlksnapException(Errno.EINVAL, "at least one device is needed");
        }
        long distinct = devices.stream().map(DeviceSpec::name).distinct().count();
        if (distinct != devices.size()) {
            throw new BlksnapException(Errno.EINVAL, "device names must be unique: " + devices);
        }
    }

    /** NBD connections served at once. */
    public int maxConnections() {
        return nbd.maxConnections();
    }

    /** Parses {@code HOST:PORT} ({@code [::1]:PORT} for IPv6), or returns null for {@code none}. */
    public static InetSocketAddress parseAddress(String what, String text) {
        if (text == null || text.isBlank() || text.equalsIgnoreCase("none")) {
            return null;
        }
        int colon = text.lastIndexOf(':');
        if (colon <= 0) {
            throw new BlksnapException(Errno.EINVAL, what + " '" + text + "' must be HOST:PORT or none");
        }
        String host = text.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port;
        try {
            port = Integer.parseInt(text.substring(colon + 1));
        } catch (NumberFormatException e) {
            port = -1;
        }
        if (port < 0 || port > 65535) {
            throw new BlksnapException(Errno.EINVAL, what + " '" + text + "': port must be 0..65535");
        }
        return new InetSocketAddress(host, port);
    }
}
