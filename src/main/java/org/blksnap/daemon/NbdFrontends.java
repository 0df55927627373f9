package org.blksnap.daemon;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.ImageInfo;
import org.blksnap.engine.Status;
import org.blksnap.nbd.Export;
import org.blksnap.nbd.ExportInfo;
import org.blksnap.nbd.ExportProvider;
import org.blksnap.nbd.MetaContext;
import org.blksnap.nbd.NbdClient;
import org.blksnap.nbd.NbdServer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The daemon's NBD side: an {@link ExportProvider} over the engine (each original device under its
 * name, each image under its image name while its snapshot lives) and the {@link NbdServer} that
 * serves it on TCP and/or a Unix socket.
 */
final class NbdFrontends {
    private static final Logger LOG = LoggerFactory.getLogger(NbdFrontends.class);

    private NbdFrontends() {
    }

    /** @param readOnlyDevice whether a device is served read-only ({@code :ro}; asked at every open) */
    static NbdFrontend start(Blksnap engine, DaemonConfig config, Metrics metrics,
                             java.util.function.Predicate<String> readOnlyDevice) throws IOException {
        if (config.listen() == null && config.nbdSocket() == null) {
            LOG.info("no NBD listener (--listen none --socket none)");
            return NbdFrontend.NONE;
        }
        Provider provider = new Provider(engine, config.readOnlyImages(), config.security(), readOnlyDevice);
        NbdServer server = new NbdServer(provider, config.nbd(), config.security().tls());
        if (config.security().tlsMode() != org.blksnap.nbd.NbdTls.Mode.OFF && config.security().tlsPsk() != null) {
            LOG.info("NBD TLS {} with pre-shared keys from {}", config.security().tlsMode().name()
                    .toLowerCase(java.util.Locale.ROOT), config.security().tlsPsk());
        } else if (config.security().tlsMode() != org.blksnap.nbd.NbdTls.Mode.OFF) {
            LOG.info("NBD TLS {} (certificate {}{})", config.security().tlsMode().name().toLowerCase(java.util.Locale.ROOT),
                    config.security().tlsCert(), config.security().tlsVerifyPeer()
                            ? ", clients verified against " + config.security().tlsCa() : "");
        }
        if (!config.security().allow().isEmpty()) {
            LOG.info("NBD allow-lists: {}", config.security().allow());
        }
        try {
            InetSocketAddress tcp = null;
            if (config.listen() != null) {
                tcp = server.listenTcp(config.listen().getHostString(), config.listen().getPort());
                LOG.info("NBD on tcp {}:{}", tcp.getHostString(), tcp.getPort());
            }
            Path unix = null;
            if (config.nbdSocket() != null) {
                unix = server.listenUnix(config.nbdSocket());
                LOG.info("NBD on unix {}", unix);
            }
            metrics.exportStats(server::stats);
            metrics.nbdServer(server);
            server.observeRequests(metrics::requestObserver);
            return new Frontend(server, tcp, unix, config.security().tlsMode() == org.blksnap.nbd.NbdTls.Mode.REQUIRE);
        } catch (IOException | RuntimeException e) {
            try {
                server.close();
            } catch (IOException s) {
                e.addSuppressed(s);
            }
            throw e;
        }
    }

    /** @param tlsRequired whether URIs say nbds (TLS required), so that libnbd clients negotiate it */
    private record Frontend(NbdServer server, InetSocketAddress tcp, Path unix, boolean tlsRequired) implements NbdFrontend {
        @Override
        public String uri(String exportName) {
            String scheme = tlsRequired ? "nbds" : "nbd";
            if (tcp != null) {
                String host = tcp.getHostString();
                if (host.contains(":")) {
                    host = "[" + host + "]";
                }
                return scheme + "://" + host + ":" + tcp.getPort() + "/" + exportName;
            }
            return scheme + "+unix:///" + exportName + "?socket=" + URLEncoder.encode(unix.toString(), StandardCharsets.UTF_8)
                    .replace("%2F", "/");
        }

        @Override
        public void closeExport(String exportName) {
            server.closeExport(exportName);
        }

        @Override
        public void close() throws IOException {
            server.close();
        }
    }

    /** Exports over the engine; thread-safe because the engine is. */
    static final class Provider implements ExportProvider {
        private final Blksnap engine;
        private final boolean readOnlyImages;
        private final NbdSecurity security;
        private final java.util.function.Predicate<String> readOnlyDevice;

        Provider(Blksnap engine, boolean readOnlyImages, NbdSecurity security,
                 java.util.function.Predicate<String> readOnlyDevice) {
            this.engine = engine;
            this.readOnlyImages = readOnlyImages;
            this.security = security;
            this.readOnlyDevice = readOnlyDevice;
        }

        @Override
        public boolean allows(String name, NbdClient client) {
            if (security.allow().isEmpty()) {
                return true;
            }
            String device = engine.deviceNames().contains(name) ? null : imageInfo(name).map(ImageInfo::device).orElse(null);
            return security.allows(name, device, client);
        }

        @Override
        public List<ExportInfo> list() {
            List<ExportInfo> out = new ArrayList<>();
            Status s = engine.status();
            for (Status.DeviceStatus d : s.devices()) {
                out.add(new ExportInfo(d.name(), "blksnap device " + d.name()));
            }
            for (Status.SnapshotStatus sn : s.snapshots()) {
                for (ImageInfo i : sn.images()) {
                    out.add(new ExportInfo(i.image(), "snapshot image of " + i.device() + " (snapshot " + sn.id() + ")"));
                }
            }
            return out;
        }

        @Override
        public Export open(String name) {
            if (engine.deviceNames().contains(name)) {
                BlockDevice dev;
                try {
                    dev = engine.device(name);
                } catch (BlksnapException e) {
                    return null;
                }
                return new DeviceExport(name, dev, readOnlyDevice.test(name) || security.readOnly().contains(name));
            }
            Optional<ImageInfo> info = imageInfo(name);
            if (info.isEmpty()) {
                return null;
            }
            BlockDevice img;
            try {
                img = engine.image(name);
            } catch (BlksnapException e) {
                return null;
            }
            return new ImageExport(engine, info.get(), img, readOnlyImages || security.readOnly().contains(name));
        }

        private Optional<ImageInfo> imageInfo(String name) {
            for (Status.SnapshotStatus sn : engine.status().snapshots()) {
                for (ImageInfo i : sn.images()) {
                    if (i.image().equals(name)) {
                        return Optional.of(i);
                    }
                }
            }
            return Optional.empty();
        }
    }

    private record DeviceExport(String name, BlockDevice device, boolean readOnly) implements Export {
        @Override
        public String description() {
            return "blksnap device " + name;
        }
    }

    /**
     * An image export, with the CBT of its device as {@code qemu:dirty-bitmap:blksnap:<generation>:<S>}
     * contexts: dirty = the block's read-map value is greater than S.
     */
    private record ImageExport(Blksnap engine, ImageInfo info, BlockDevice device, boolean readOnly) implements Export {
        @Override
        public String name() {
            return info.image();
        }

        @Override
        public String description() {
            return "snapshot image of " + info.device() + " (snapshot " + info.snapshotId() + ")";
        }

        @Override
        public List<String> metaContextNames() {
            return CbtContext.names(engine, info.device());
        }

        @Override
        public MetaContext resolveMetaContext(String name) {
            return CbtContext.resolve(engine, info.device(), name, device.sizeBytes());
        }
    }
}
