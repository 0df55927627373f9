package org.blksnap.daemon;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.blksnap.engine.device.BlockDevice;
import org.blksnap.engine.module.Blksnap;
import org.blksnap.engine.module.BlksnapException;
import org.blksnap.engine.snapshot.SnapImage;
import org.blksnap.nbd.Export;
import org.blksnap.nbd.ExportInfo;
import org.blksnap.nbd.ExportProvider;
import org.blksnap.nbd.NbdServer;

/**
 * Starts the NBD server over the engine: every device and every snapshot image is an export of
 * the same name.
 *
 * <p>Minimal wiring made on the bench branch so that benchmarks can reach the daemon over NBD
 * before the ctrl branch fills this in; the ctrl branch's version replaces it on merge.
 */
final class NbdFrontends {
    private NbdFrontends() {
    }

    static NbdFrontend start(Blksnap engine, DaemonConfig config, Metrics metrics) throws IOException {
        if (config.listen() == null && config.nbdSocket() == null) {
            return NbdFrontend.NONE;
        }
        NbdServer server = new NbdServer(new EngineExports(engine, config.readOnlyImages()));
        try {
            InetSocketAddress tcp = config.listen() == null ? null
                    : server.listenTcp(config.listen().getHostString(), config.listen().getPort());
            Path unix = config.nbdSocket() == null ? null : server.listenUnix(config.nbdSocket());
            return new Frontend(server, tcp, unix);
        } catch (IOException | RuntimeException e) {
            server.close();
            throw e;
        }
    }

    private record Frontend(NbdServer server, InetSocketAddress tcp, Path unix) implements NbdFrontend {
        @Override
        public String uri(String exportName) {
            if (tcp != null) {
                return "nbd://" + tcp.getHostString() + ":" + tcp.getPort() + "/" + exportName;
            }
            return "nbd+unix:///" + exportName + "?socket=" + unix;
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

    private record EngineExports(Blksnap engine, boolean readOnlyImages) implements ExportProvider {
        @Override
        public List<ExportInfo> list() {
            List<ExportInfo> out = new ArrayList<>();
            for (String d : engine.deviceNames()) {
                out.add(new ExportInfo(d, "device " + d));
            }
            for (String d : engine.deviceNames()) {
                for (var id : engine.snapshotCollect()) {
                    for (var img : engine.snapshotCollectImages(id)) {
                        if (img.device().equals(d)) {
                            out.add(new ExportInfo(img.image(), "image of " + d));
                        }
                    }
                }
            }
            return out;
        }

        @Override
        public Export open(String name) {
            BlockDevice dev;
            boolean image = name.startsWith("blksnap-image");
            try {
                dev = image ? engine.image(name) : engine.device(name);
            } catch (BlksnapException e) {
                return null;
            }
            boolean ro = image && readOnlyImages;
            return new Export() {
                @Override
                public String name() {
                    return name;
                }

                @Override
                public BlockDevice device() {
                    return dev;
                }

                @Override
                public boolean readOnly() {
                    return ro;
                }

                @Override
                public String description() {
                    return dev instanceof SnapImage s ? "image of " + s.device() : "device " + name;
                }
            };
        }
    }
}
