package org.blksnap.daemon;

import java.io.IOException;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.blksnap.agent.Agent;
import org.blksnap.ctrl.ControlServer;
import org.blksnap.ctrl.DeviceAdmin;
import org.blksnap.ctrl.FreezeHooks;
import org.blksnap.ctrl.api.Requests;
import org.blksnap.ctrl.api.Sizes;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.EngineListener;
import org.blksnap.engine.Errno;
import org.blksnap.engine.Status;
import org.blksnap.engine.ImageInfo;
import org.blksnap.engine.Params;
import org.blksnap.engine.module.BlksnapModule;
import org.blksnap.util.FirstFailure;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A running blksnapd: the engine with its devices (declared, and added at run time: {@link
 * DeviceManager}), the NBD server, the control API and optional metrics, over one locked data
 * directory.
 *
 * <p>{@link #close()} shuts down in the module's exit order: the control API stops accepting; every
 * snapshot is destroyed (images first); the NBD server closes; the engine saves every tracker
 * (with persistence) and closes the backing files; the control socket and the lock go. The first failure is kept, the rest
 * are added as suppressed. Idempotent and thread-safe.
 */
public final class Daemon implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Daemon.class);

    private final DaemonConfig config;
    private final AtomicBoolean closed = new AtomicBoolean();
    private final CountDownLatch stopped = new CountDownLatch(1);
    private DataDirLock lock;
    private Blksnap engine;
    private DeviceManager devices;
    private Metrics metrics;
    private NbdFrontend nbd = NbdFrontend.NONE;
    private ControlServer control;
    private Agent agent;
    private InetSocketAddress metricsAddress;

    private Daemon(DaemonConfig config) {
        this.config = config;
    }

    /**
     * Starts everything; on failure, undoes what was started and rethrows.
     *
     * @throws DataDirLock.HeldException another daemon holds the data directory
     * @throws BlksnapException          EINVAL for bad parameters or devices
     * @throws IOException               a device, socket or port could not be opened
     */
    public static Daemon start(DaemonConfig config) throws IOException {
        Daemon d = new Daemon(config);
        try {
            d.startAll();
            return d;
        } catch (IOException | RuntimeException e) {
            try {
                d.close();
            } catch (Exception s) {
                e.addSuppressed(s);
            }
            throw e;
        }
    }

    private void startAll() throws IOException {
        Path dataDir = config.dataDir();
        if (!Files.isDirectory(dataDir)) {
            Files.createDirectories(dataDir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        }
        lock = DataDirLock.acquire(dataDir);
        Params params = new Params();
        for (String p : config.params()) {
            Requests.ParamsSet assignment = Requests.ParamsSet.parse(p);
            params.set(assignment.name(), assignment.value());
        }
        engine = BlksnapModule.init(params, config.persistence());
        metrics = new Metrics(engine);
        engine.addListener(metrics.copyListener());
        devices = DeviceManager.start(engine, dataDir, config.devices());
        nbd = NbdFrontends.start(engine, config, metrics, devices::isReadOnly);
        engine.addListener(new EngineListener() {
            @Override
            public void imageCreated(ImageInfo image) {
                LOG.info("image {} of {} (snapshot {}) is served", image.image(), image.device(), image.snapshotId());
            }

            @Override
            public void imageRemoved(ImageInfo image) {
                LOG.info("image {} removed; closing its export", image.image());
                nbd.closeExport(image.image());
            }

            @Override
            public void deviceRemoved(String deviceName) {
                // The engine calls this before it closes the backing store: requests in flight finish.
                nbd.closeExport(deviceName);
            }
        });
        control = ControlServer.start(engine, devices, config.controlSocket(), nbd::uri,
                FreezeHooks.CommandRunner.PROCESS, metrics::event,
                ControlAccess.create(config.controlGroup(), config.allowPaths(), dataDir), config.maxControlConnections());
        agent = new Agent(config.controlSocket(), names -> engine.status().devices().stream()
                .filter(d -> names.contains(d.name())).mapToLong(Status.DeviceStatus::sizeBytes).sum(),
                LocalImageReader.opener(engine));
        control.serveAgent(agent);
        if (config.controlGroup() != null) {
            warnIfTheGroupCannotReach(config.controlSocket(), config.controlGroup());
        }
        if (config.metrics() != null) {
            metricsAddress = metrics.serve(config.metrics());
        }
        LOG.info("blksnapd {} up: data dir {}", engine.version(), dataDir);
    }

    /**
     * Members of the control group need search permission on every directory above the socket;
     * the default place, the data directory, is 0700. Says so once at start instead of leaving them
     * with "permission denied".
     */
    private static void warnIfTheGroupCannotReach(Path socket, String group) {
        for (Path dir = socket.toAbsolutePath().getParent(); dir != null; dir = dir.getParent()) {
            try {
                PosixFileAttributes a = Files.readAttributes(dir, PosixFileAttributes.class);
                Set<PosixFilePermission> p = a.permissions();
                boolean searchable = p.contains(PosixFilePermission.OTHERS_EXECUTE)
                        || a.group().getName().equals(group)
                        && p.contains(PosixFilePermission.GROUP_EXECUTE);
                if (!searchable) {
                    LOG.warn("--control-group {}: its members cannot reach the control socket {}: {} is mode {} ({}:{});"
                            + " give --control a path in a directory they may search (e.g. /run/blksnap/control.sock)",
                            group, socket, dir, PosixFilePermissions.toString(p),
                            a.owner().getName(), a.group().getName());
                    return;
                }
            } catch (IOException e) {
                return;
            }
        }
    }

    /** The engine (tests). */
    public Blksnap engine() {
        return engine;
    }

    /** Every device known, served or registered but unavailable, in name order. */
    public List<DeviceAdmin.Entry> devices() {
        return devices.entries();
    }

    public DaemonConfig config() {
        return config;
    }

    /** The address metrics are served on, or null. */
    public InetSocketAddress metricsAddress() {
        return metricsAddress;
    }

    /** The URI of an export, or null. */
    public String uri(String exportName) {
        return nbd.uri(exportName);
    }

    /** Blocks until {@link #close()} has finished. */
    public void awaitStopped() throws InterruptedException {
        stopped.await();
    }

    /** Prints where everything is and what to try next. */
    public void printNextSteps(PrintWriter out) {
        Path ctl = config.controlSocket().toAbsolutePath();
        List<DeviceAdmin.Entry> all = devices.entries();
        List<String> served = all.stream().filter(d -> d.unavailable() == null).map(DeviceAdmin.Entry::name).toList();
        String first = config.devices().stream().map(DeviceSpec::name).filter(served::contains).findFirst()
                .orElse(served.isEmpty() ? "NAME" : served.getFirst());
        out.println("blksnapd " + engine.version() + " is running.");
        out.println("  data directory : " + config.dataDir().toAbsolutePath());
        for (DeviceAdmin.Entry d : all) {
            if (d.unavailable() != null) {
                out.println("  device         : " + d.name() + " NOT SERVED (" + d.path() + "): " + d.unavailable());
                continue;
            }
            String added = d.origin() == DeviceAdmin.Origin.ADDED ? ", added at run time" : "";
            out.println("  device         : " + d.name() + " (" + Sizes.format(d.sizeBytes()) + ", " + d.path() + added
                    + ")" + (nbd.uri(d.name()) == null ? "" : "  " + nbd.uri(d.name())));
        }
        if (config.listen() != null) {
            out.println("  NBD (TCP)      : " + config.listen().getHostString() + ":" + config.listen().getPort());
        }
        if (config.nbdSocket() != null) {
            out.println("  NBD (Unix)     : " + config.nbdSocket().toAbsolutePath());
        }
        out.println("  control API    : " + ctl + "   (curl --unix-socket " + ctl + " http://x/v1/version)");
        if (metricsAddress != null) {
            out.println("  metrics        : http://" + metricsAddress.getHostString() + ":" + metricsAddress.getPort()
                    + "/metrics");
        }
        out.println();
        out.println("Next, in another terminal:");
        String uri = nbd.uri(first);
        if (uri != null) {
            out.println("  nbdinfo '" + uri + "'");
        }
        out.println("  export BLKSNAP_CONTROL=" + ctl);
        out.println("  id=$(bin/blksnap snapshot create --device " + first + ")");
        out.println("  bin/blksnap snapshot append-storage --id $id --file " + config.dataDir().toAbsolutePath()
                .resolve("diff0.img") + " --size 256M");
        out.println("  bin/blksnap snapshot take --id $id");
        out.println("  bin/blksnap snapshot images --id $id        # NAME IMAGE URI");
        String img = nbd.uri("blksnap-image0");
        if (img != null) {
            out.println("  nbdcopy '" + img + "' backup.img");
        }
        out.println("  bin/blksnap tracker read-cbt-map --device " + first + " --file cbt.map");
        out.println("  bin/blksnap snapshot destroy --id $id");
        out.println("Stop with Ctrl-C (or SIGTERM): snapshots are destroyed, trackers are saved in "
                + (config.persistence().enabled() ? config.persistence().directory() : "(nowhere: --no-persist)")
                + ", everything is closed.");
        out.flush();
    }

    @Override
    public void close() throws IOException {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        LOG.info("shutting down");
        FirstFailure errors = new FirstFailure();
        if (agent != null) {
            agent.close(); // before the control API stops accepting: its jobs destroy their snapshots through it
        }
        if (control != null) {
            control.stopAccepting();
        }
        if (engine != null) {
            for (UUID id : safeList(engine::snapshotCollect, errors)) {
                try {
                    engine.snapshotDestroy(id);
                    LOG.info("snapshot {} destroyed at exit", id);
                } catch (BlksnapException e) {
                    if (e.errno() != Errno.ENODEV) {
                        errors.add(e);
                    }
                }
            }
            // Trackers are not removed: the engine's exit saves them (removing would delete their state).
        }
        run(nbd::close, errors);
        if (engine != null) {
            run(engine::close, errors);
        }
        if (control != null) {
            run(control::close, errors);
        }
        if (metrics != null) {
            run(metrics::close, errors);
        }
        if (lock != null) {
            run(lock::close, errors);
        }
        LOG.info("stopped");
        stopped.countDown();
        if (errors.first() != null) {
            throw new IOException("shutdown had " + errors.count() + " error(s); first: " + errors.first(), errors.first());
        }
    }

    private static <T> List<T> safeList(java.util.function.Supplier<List<T>> s, FirstFailure errors) {
        try {
            return s.get();
        } catch (RuntimeException e) {
            errors.add(e);
            return List.of();
        }
    }

    private static void run(FirstFailure.Step step, FirstFailure errors) {
        try {
            step.run();
        } catch (Exception e) {
            LOG.error("shutdown step failed", e);
            errors.add(e);
        }
    }
}
