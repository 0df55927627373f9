package org.blksnap.cli;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.blksnap.backup.ImageReader;
import org.blksnap.backup.Point;
import org.blksnap.backup.Repository;
import org.blksnap.backup.RepositoryException;
import org.blksnap.backup.RepositoryKey;
import org.blksnap.ctrl.api.AbsolutePath;
import org.blksnap.ctrl.api.Replies;
import org.blksnap.ctrl.api.Requests;
import org.blksnap.ctrl.api.Size;
import org.blksnap.backup.RepositoryLocation;
import org.blksnap.util.FileTrees;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * The backup commands: {@code backup} (snapshot, read over NBD, write points, destroy), and the
 * repository's own {@code points}, {@code restore} and {@code verify}, which need no daemon. The
 * repository is {@link Repository} (docs/repository.md); exit codes of its errors come from
 * {@link RepositoryException.Code#exitStatus}.
 */
final class BackupCommands {
    private BackupCommands() {
    }

    /** The exit statuses of the backup commands: the tool's, and the repository's own. */
    static final String EXIT_FOOTER = "%nExit status: 0 ok; 65 damaged (verify found problems) or another format version; "
            + "66 no such repository, point or device; 73 restore target too small or existing; 74 NBD or local I/O; "
            + "75 another gc is running; 77 the key does not fit (missing or wrong for an encrypted repository, given "
            + "for an unencrypted one); 28 the repository's filesystem is full; 64 usage; "
            + "the errno number of an engine error (backup); 111 daemon not reachable (backup).";

    /** {@code --repo}, {@code --s3-endpoint} and {@code --key-file}, shared by every repository command. */
    static final class RepoOptions {
        @CommandLine.Spec(CommandLine.Spec.Target.MIXEE)
        CommandLine.Model.CommandSpec mixee;
        @Option(names = "--repo", required = true, paramLabel = "REPO",
                description = "the repository: a directory, or s3://BUCKET/PREFIX (region and credentials from the AWS "
                        + "SDK's environment and profiles: AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE)")
        String repo;
        @Option(names = "--s3-endpoint", paramLabel = "URL",
                description = "an S3-compatible server (MinIO, Ceph RGW, ...), addressed path-style; default: $"
                        + RepositoryLocation.ENDPOINT_ENV + ", else AWS")
        String s3Endpoint;
        @Option(names = "--key-file", paramLabel = "FILE",
                description = "the key of an encrypted repository (made by `repo init --encrypt`); default: $"
                        + RepositoryKey.KEY_FILE_ENV + "; refused for an unencrypted repository")
        Path keyFile;

        /** The key file named by --key-file, else $BLKSNAP_KEY_FILE, else null. */
        Path keyFile() {
            return keyFile(keyFile, (Tool) mixee.root().userObject());
        }

        /**
         * The key of the key file, or null when none is named.
         *
         * @throws RepositoryException KEY the file is missing or not a key file
         */
        RepositoryKey key() throws RepositoryException {
            return key(keyFile, (Tool) mixee.root().userObject());
        }

        /** The key file {@code given} (a --key-file option), else $BLKSNAP_KEY_FILE of {@code run}, else null. */
        static Path keyFile(Path given, Tool run) {
            if (given != null) {
                return given.toAbsolutePath();
            }
            String e = run.env(RepositoryKey.KEY_FILE_ENV);
            return e == null || e.isBlank() ? null : Path.of(e.trim()).toAbsolutePath();
        }

        /** As {@link #key()}, for a command with a --key-file option of its own ({@code status --repo}). */
        static RepositoryKey key(Path given, Tool run) throws RepositoryException {
            Path f = keyFile(given, run);
            return f == null ? null : RepositoryKey.load(f);
        }

        RepositoryLocation location() {
            try {
                return Repository.locate(repo, s3Endpoint);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.ParameterException(mixee.commandLine(), e.getMessage());
            }
        }
    }

    /** One device's line of {@code backup}. */
    record BackupPoint(String device, String id, String kind, String reason, String generation, long snapNumber,
                       long sizeBytes, long bytesRead, long newBytes, double seconds, Repository.PointPhases phases) {
        static BackupPoint of(Point p, Repository.PointPhases phases) {
            return new BackupPoint(p.device(), p.id(), p.kind(), p.reason(), p.generation(), p.snapNumber(),
                    p.sizeBytes(), p.bytesRead(), p.newBytes(), p.seconds(), phases);
        }
    }

    /**
     * {@code backup --json}: every device's point, where the command's time went, and the id of the
     * resident agent's job that ran it (absent when the tool ran it itself).
     */
    @com.fasterxml.jackson.annotation.JsonInclude(com.fasterxml.jackson.annotation.JsonInclude.Include.NON_NULL)
    record BackupReport(List<BackupPoint> points, Timings timings, String agentJob) {
    }

    /**
     * Where the wall-clock time of one {@code backup} went, in seconds: the JVM's start up to the
     * command (process start to {@code call()}), opening the repository, creating the snapshot,
     * appending its first storage, the take (with freeze hooks), collecting trackers and images,
     * the devices' points (reading, hashing, compressing, storing, committing: each point's
     * {@code seconds} has its own share), and destroying the snapshot with its storage. The sum is
     * the command's time but for the JVM's exit.
     */
    record Timings(double jvmStartSeconds, double openRepositorySeconds, double createSeconds, double storageSeconds,
                   double takeSeconds, double collectSeconds, double pointsSeconds, double destroySeconds) {
    }

    /** A stopwatch for {@link Timings}: {@link #lap} returns the seconds since the previous lap. Not thread-safe. */
    private static final class Laps {
        private long last = System.nanoTime();

        double lap() {
            long now = System.nanoTime();
            double s = (now - last) / 1e9;
            last = now;
            return s;
        }
    }

    /** One point of {@code points}. */
    record PointLine(String id, String host, String device, String time, String kind, String generation, long snapNumber,
                     long sizeBytes) {
        static PointLine of(Point p) {
            return new PointLine(p.id(), p.host(), p.device(), p.time(), p.kind(), p.generation(), p.snapNumber(),
                    p.sizeBytes());
        }
    }

    record PointList(List<PointLine> points) {
    }

    @Command(name = "backup", footer = EXIT_FOOTER, description = "Back up devices into a repository: one coherent snapshot of all of them, "
            + "then per device an incremental point (only blocks changed since its last point) or a full one.")
    static final class BackupCmd extends Commands.Base {
        /**
         * The options an agent run hands to the resident agent, each as this process resolved it
         * ({@link #agentArgs}). Every option of this command is here or in {@link #AGENT_NOT_FORWARDED}
         * (CliTest checks it), so a new option cannot be dropped from agent runs unnoticed.
         */
        static final java.util.Set<String> AGENT_FORWARDED = java.util.Set.of("--repo", "--key-file", "--host", "--dedup-scope",
                "--device", "--freeze", "--storage-dir", "--storage-limit", "--storage-size", "--snapshot-lease", "--pack-size",
                "--debug-pause-after", "--json");
        /**
         * The options an agent run does not hand on: --agent (the agent is the run), --s3-endpoint
         * (the agent takes directory repositories only), --control (the agent uses its own
         * socket), --help and --version (answered before any run).
         */
        static final java.util.Set<String> AGENT_NOT_FORWARDED = java.util.Set.of("--agent", "--s3-endpoint", "--control",
                "--help", "--version");

        /** Initial difference storage when no --storage-size is given, in bytes (or the limit if smaller). */
        static final long DEFAULT_INITIAL_STORAGE_BYTES = 256L << 20;

        @Mixin
        RepoOptions repo;
        @Option(names = "--host", paramLabel = "NAME",
                description = "the host name the points record (default: $BLKSNAP_HOST, else this machine's name); "
                        + "each host of a fleet sharing a repository needs its own")
        String host;
        @Option(names = "--dedup-scope", paramLabel = "all|host", defaultValue = "all",
                description = "store a chunk once if any host stored it (all, default), or only if this host did (host: "
                        + "memory and downloads bounded by this host's own points, for large fleets; docs/repository.md)")
        String dedupScope;
        @Option(names = "--device", required = true, paramLabel = "NAME", description = "a device to back up (repeatable: all in one snapshot)")
        List<String> devices = new ArrayList<>();
        @Option(names = "--freeze", paramLabel = "MOUNTPOINT", description = "fsfreeze around the take")
        List<Path> freeze = new ArrayList<>();
        @Option(names = "--storage-dir", paramLabel = "DIR",
                description = "where the difference storage files go (default: the control socket's directory, the daemon's data directory)")
        Path storageDir;
        @Option(names = "--storage-limit", paramLabel = "SIZE", defaultValue = "1G",
                description = "the storage grows on low-space events up to this (default ${DEFAULT-VALUE})")
        Size storageLimit;
        @Option(names = "--storage-size", paramLabel = "SIZE", description = "initial storage (default: 256M or the limit if smaller)")
        Size storageSize;
        @Option(names = "--snapshot-lease", paramLabel = "SECONDS", defaultValue = "60",
                description = "the snapshot is created with this lease and renewed while the backup runs, so the daemon "
                        + "destroys it when the backup was killed and cannot (default ${DEFAULT-VALUE})")
        long snapshotLeaseSeconds;
        @Option(names = "--pack-size", paramLabel = "SIZE", hidden = true, description = "pack files are sealed at this size")
        Size packSize;
        @Option(names = "--agent", paramLabel = "auto|daemon|off", defaultValue = "auto",
                description = "where the backup runs: in the daemon's resident agent (daemon: a warm JVM, so a small "
                        + "incremental costs what it reads instead of a JVM's start and warm-up), in this process (off), "
                        + "or auto (default): the agent for a directory repository when the daemon lets this user "
                        + "start it (root or the daemon's user), else this process")
        String agent;
        /**
         * A test hook: after this many bytes of a device are read (the snapshot taken), wait for a
         * line on stdin, or to be killed (the crash and coherence tests).
         */
        @Option(names = "--debug-pause-after", paramLabel = "SIZE", hidden = true)
        Size pauseAfter;

        @Override
        public Integer call() throws Exception {
            Tool main = (Tool) spec.root().userObject();
            Cli cli = cli();
            Path socket = main.controlSocket();
            Path storageRoot = (storageDir != null ? storageDir : socket.toAbsolutePath().getParent()).toAbsolutePath().normalize();
            if (!Files.isDirectory(storageRoot)) {
                if (storageDir == null) {
                    // the default is the daemon's data directory: missing, the daemon is not there either
                    throw new ControlClient.UnreachableException("cannot reach blksnapd at " + socket.toAbsolutePath()
                            + ": its directory (the default --storage-dir) does not exist", null);
                }
                throw usage("--storage-dir " + storageRoot + " is not a directory");
            }
            long limit = storageLimit.bytes();
            long initial = storageSize != null ? storageSize.bytes() : Math.min(DEFAULT_INITIAL_STORAGE_BYTES, limit);
            initial -= initial % 512;
            if (initial > limit || initial <= 0) {
                throw usage("--storage-size (" + initial + ") must be within 512.." + limit + " (--storage-limit)");
            }
            long packBytes = packSize != null ? packSize.bytes() : 32L << 20;
            List<BackupPoint> done = new ArrayList<>();
            double jvmStart = secondsSinceLaunch(main.env("BLKSNAP_LAUNCHED_AT"));
            Laps laps = new Laps();
            double[] lap = new double[7];
            RepositoryLocation where = repo.location();
            String hostName = host != null ? host : Repository.defaultHost();
            if (!hostName.matches(Repository.HOST_PATTERN)) {
                throw usage("--host " + hostName + " must be letters, digits, dots, hyphens or underscores (a DNS name)");
            }
            Repository.DedupScope scope = switch (dedupScope) {
                case "all" -> Repository.DedupScope.ALL;
                case "host" -> Repository.DedupScope.HOST;
                default -> throw usage("--dedup-scope " + dedupScope + " must be all or host");
            };
            if (!List.of("auto", "daemon", "off").contains(agent)) {
                throw usage("--agent " + agent + " must be auto, daemon or off");
            }
            // a relaunch for the optimizing compiler (Relaunch): the first process asked the agent already
            String relaunchedBy = main.env(Relaunch.IN_PROCESS_ENV);
            if (relaunchedBy != null) {
                Relaunch.endWithParent(main, relaunchedBy);
            }
            boolean relaunched = agent.equals("auto") && relaunchedBy != null;
            if (!agent.equals("off") && !relaunched) {
                if (where instanceof RepositoryLocation.S3 && agent.equals("daemon")) {
                    throw usage("--agent daemon: an S3 repository is backed up by this process (its credentials are "
                            + "this process's environment, not the daemon's); use --agent off or auto");
                }
                if (where instanceof RepositoryLocation.Directory dir) {
                    Integer rc = AgentRun.run(cli, main, agentArgs(main, dir, storageRoot, limit, hostName),
                            snapshotLeaseSeconds, agent.equals("auto"));
                    if (rc != null) {
                        return rc;
                    }
                }
            }
            String launcher = main.env(Relaunch.LAUNCHER_ENV);
            if (launcher != null && !launcher.isEmpty()) {
                // this JVM was started for the agent's quick relay (C1 only): hash and compress in one with C2
                return Relaunch.withFullCompiler(main, launcher, spec.root().commandLine().getParseResult().originalArgs());
            }
            try (Repository repository = Repository.openForWriting(where, repo.key(), hostName, packBytes, cli::warn)) {
                repository.dedupScope(scope);
                for (Map<String, String> stale : repository.staleSessions()) {
                    cleanUpAfterADeadBackup(cli, stale);
                }
                lap[0] = laps.lap();
                UUID id = cli.call(new Requests.SnapshotCreate(devices, snapshotLeaseSeconds)).id();
                lap[1] = laps.lap();
                Path storage = storageRoot.resolve("backup-" + id);
                Session session = new Session(cli, id, storage);
                session.renewer = renewer(cli.onStderr(), id, snapshotLeaseSeconds);
                session.afterEnd = () -> {
                    try {
                        repository.recordSession(Map.of());
                    } catch (RepositoryException e) {
                        cli.warn("backup: " + e.getMessage());
                    }
                };
                Thread hook = new Thread(session::endBySignal, "blksnap-backup-cleanup");
                Runtime.getRuntime().addShutdownHook(hook);
                try {
                    Files.createDirectories(storage);
                    repository.recordSession(Map.of("snapshot", id.toString(), "storage", storage.toString()));
                    cli.call(new Requests.AppendStorage(id, new AbsolutePath(storage.resolve("diff_storage-initial")),
                            Size.ofBytes(initial), List.of()));
                    lap[2] = laps.lap();
                    if (limit > initial) {
                        Cli stretchCli = cli.onStderr();
                        long more = limit - initial;
                        session.stretch = Thread.ofVirtual().name("backup-stretch").start(() -> {
                            try {
                                new Stretch(stretchCli, id, storage, more, 1000).run();
                            } catch (Exception e) {
                                stretchCli.warn("backup: growing the storage failed: " + e.getMessage());
                            }
                        });
                    }
                    cli.call(new Requests.Take(id, freeze.stream().map(AbsolutePath::resolve).toList()));
                    lap[3] = laps.lap();
                    List<Replies.Tracker> trackers = cli.call(new Requests.TrackerCollect()).trackers();
                    List<Replies.Image> images = cli.call(new Requests.CollectImages(id)).images();
                    lap[4] = laps.lap();
                    for (String device : devices) {
                        Replies.Tracker t = trackers.stream().filter(x -> x.device().equals(device)).findFirst()
                                .orElseThrow(() -> new IllegalStateException("no tracker of " + device + " after the take"));
                        Replies.Image image = images.stream().filter(x -> x.device().equals(device)).findFirst()
                                .orElseThrow(() -> new IllegalStateException("no image of " + device + " after the take"));
                        ImageReader.Opener opener = main.localImages();
                        if (opener == null && image.uri() == null) {
                            throw new RepositoryException(RepositoryException.Code.NBD, "the daemon serves no NBD: "
                                    + "the image of " + device + " cannot be read");
                        }
                        Repository.BackupSource source = new Repository.BackupSource(device, image.image(), image.uri(),
                                opener != null ? opener : ImageReader.Opener.NBD, image.sizeBytes(),
                                t.blockSizeBytes(), t.generationId().toString(), t.snapNumber());
                        AtomicReference<Repository.PointPhases> phases = new AtomicReference<>();
                        Point p = repository.backup(source, () -> {
                            byte[] local = opener != null ? opener.cbtMap(device, t.blockCount()) : null;
                            return local != null ? local : readMap(cli, device, t.blockCount());
                        },
                                progress(cli, device, phases));
                        BackupPoint line = BackupPoint.of(p, phases.get());
                        done.add(line);
                        if (!main.json) {
                            cli.warn("backup: " + device + ": " + p.kind() + ": " + p.reason());
                            cli.print(line, BackupCommands::backupLine);
                        }
                    }
                    lap[5] = laps.lap();
                } catch (Exception e) {
                    if (session.signalled) {
                        // the failure is the signal's cleanup pulling the snapshot away: endBySignal said so
                        return ExitCodes.SIGNALLED;
                    }
                    throw e;
                } finally {
                    session.end();
                    lap[6] = laps.lap();
                    try {
                        Runtime.getRuntime().removeShutdownHook(hook);
                    } catch (IllegalStateException e) {
                        // the JVM is shutting down: the hook runs (and finds the session ended)
                    }
                }
            }
            if (main.json) {
                cli.print(new BackupReport(done, new Timings(jvmStart, lap[0], lap[1], lap[2], lap[3], lap[4], lap[5], lap[6]),
                        main.env(Main.AGENT_JOB_ENV)), r -> "");
            }
            return ExitCodes.OK;
        }

        /**
         * This command's arguments for the resident agent: every value as this process resolved it
         * (paths absolute, the host and key file from this process's environment); the agent adds its
         * own control socket and turns itself off for the run.
         */
        private List<String> agentArgs(Tool main, RepositoryLocation.Directory dir, Path storageRoot,
                                       long limit, String hostName) {
            List<String> a = new ArrayList<>(List.of("backup", "--repo", dir.dir().toAbsolutePath().normalize().toString(),
                    "--host", hostName, "--dedup-scope", dedupScope,
                    "--storage-dir", storageRoot.toString(), "--storage-limit", Long.toString(limit),
                    "--snapshot-lease", Long.toString(snapshotLeaseSeconds)));
            Path key = repo.keyFile();
            if (key != null) {
                a.addAll(List.of("--key-file", key.toString()));
            }
            for (String d : devices) {
                a.addAll(List.of("--device", d));
            }
            for (Path f : freeze) {
                a.addAll(List.of("--freeze", f.toAbsolutePath().normalize().toString()));
            }
            if (storageSize != null) {
                a.addAll(List.of("--storage-size", Long.toString(storageSize.bytes())));
            }
            if (packSize != null) {
                a.addAll(List.of("--pack-size", Long.toString(packSize.bytes())));
            }
            if (pauseAfter != null) {
                a.addAll(List.of("--debug-pause-after", Long.toString(pauseAfter.bytes())));
            }
            if (main.json) {
                a.add("--json");
            }
            return a;
        }

        /**
         * Seconds from the launcher's start to here: the JVM's start, class loading and option parsing.
         * The launcher exports its clock ({@code BLKSNAP_LAUNCHED_AT}, bash's {@code $EPOCHREALTIME});
         * the process start time the kernel reports is computed from the boot time, which drifts by
         * half a second in a virtual machine, so it is only the fallback.
         */
        static double secondsSinceLaunch(String launched) {
            java.time.Instant now = java.time.Instant.now();
            if (launched != null) {
                try {
                    double at = Double.parseDouble(launched.replace(',', '.'));
                    double s = now.getEpochSecond() + now.getNano() / 1e9 - at;
                    if (s >= 0 && s < 3600) {
                        return s;
                    }
                } catch (NumberFormatException e) {
                    // fall back below
                }
            }
            return ProcessHandle.current().info().startInstant()
                    .map(t -> java.time.Duration.between(t, now).toNanos() / 1e9).orElse(0.0);
        }

        private Repository.Progress progress(Cli cli, String device, AtomicReference<Repository.PointPhases> phases) {
            Repository.Progress line = ProgressLine.of(cli, "backup " + device);
            AtomicBoolean paused = new AtomicBoolean();
            return new Repository.Progress() {
                @Override
                public void update(long doneBytes, long totalBytes) {
                    line.update(doneBytes, totalBytes);
                    if (pauseAfter != null && doneBytes >= pauseAfter.bytes() && paused.compareAndSet(false, true)) {
                        cli.warn("backup: paused after " + doneBytes + " bytes (--debug-pause-after); a line on stdin resumes");
                        try {
                            new java.io.BufferedReader(new java.io.InputStreamReader(((Tool) spec.root().userObject()).stdin(),
                                    java.nio.charset.StandardCharsets.UTF_8)).readLine();
                        } catch (IOException e) {
                            throw new java.io.UncheckedIOException(e);
                        }
                    }
                }

                @Override
                public void finished(Repository.PointPhases p) {
                    line.finished(p);
                    phases.set(p);
                }
            };
        }

        /** Destroys the snapshot and removes the storage a killed backup of this repository left behind. */
        private static void cleanUpAfterADeadBackup(Cli cli, Map<String, String> stale) {
            String snapshot = stale.get("snapshot");
            if (snapshot != null) {
                cli.warn("backup: the previous backup into this repository did not finish; destroying its snapshot " + snapshot);
                try {
                    new Session(cli, UUID.fromString(snapshot), stale.containsKey("storage")
                            ? Path.of(stale.get("storage")) : null).end();
                } catch (IllegalArgumentException e) {
                    cli.warn("backup: a dead session of this host names a malformed snapshot id " + snapshot);
                }
            }
        }

        /**
         * Renews the snapshot's lease four times per lease until interrupted (by {@link Session#end}), so
         * only a backup that died (or stopped for most of a lease) loses its snapshot.
         */
        private static Thread renewer(Cli cli, UUID id, long leaseSeconds) {
            long periodMillis = Math.max(100, leaseSeconds * 1000 / 4);
            return Thread.ofVirtual().name("backup-lease").start(() -> {
                while (!Thread.currentThread().isInterrupted()) {
                    try {
                        Thread.sleep(periodMillis);
                        cli.call(new Requests.SnapshotRenew(id));
                    } catch (InterruptedException e) {
                        return;
                    } catch (Exception e) {
                        if (Thread.currentThread().isInterrupted()) {
                            return;
                        }
                        cli.warn("backup: renewing the lease of snapshot " + id + " failed: " + e.getMessage());
                    }
                }
            });
        }

        private static byte[] readMap(Cli cli, String device, int blockCount) throws Exception {
            ByteArrayOutputStream map = new ByteArrayOutputStream(blockCount);
            long pos = 0;
            while (pos < blockCount) {
                int piece = (int) Math.min(Commands.TrackerCmd.ReadCbtMap.PIECE_BLOCKS, blockCount - pos);
                byte[] data = cli.call(new Requests.ReadCbtMap(device, pos, piece)).data();
                if (data.length == 0) {
                    break;
                }
                map.write(data);
                pos += data.length;
            }
            return map.toByteArray();
        }
    }

    /**
     * The daemon-side state of one backup: its snapshot and the storage directory. {@link #end} (from
     * the command, or from the shutdown hook on SIGTERM/Ctrl-C) destroys the snapshot, which stops the
     * stretch, removes the storage files and then clears the record of them in the repository's lock
     * file; only the first call acts. Thread-safe.
     */
    private static final class Session {
        private final Cli cli;
        private final UUID id;
        private final Path storage;
        private final AtomicBoolean ended = new AtomicBoolean();
        volatile Thread stretch;
        volatile Thread renewer;
        /** Runs once the snapshot and storage are gone (clears the repository's record of them). */
        volatile Runnable afterEnd = () -> { };
        /** Set by {@link #endBySignal} before it ends the session. */
        volatile boolean signalled;

        Session(Cli cli, UUID id, Path storage) {
            this.cli = cli;
            this.id = id;
            this.storage = storage;
        }

        /**
         * The shutdown hook's end (SIGTERM, Ctrl-C): ends the session and says so when it was this
         * call that ended it; the reads it pulls the snapshot from under fail, and the command then
         * reports nothing more. Points finished before stay (each is complete on its own).
         */
        void endBySignal() {
            signalled = true;
            if (end()) {
                cli.warn("backup: stopped by a signal: snapshot " + id + " destroyed, the point being written was not");
            }
        }

        /** Ends the session unless it has ended; returns whether this call ended it. */
        boolean end() {
            if (!ended.compareAndSet(false, true)) {
                return false;
            }
            Thread r = renewer;
            if (r != null) {
                r.interrupt();
            }
            // A cancelled backup (Ctrl-C in the resident agent) ends here with its thread interrupted:
            // the interrupt would close the control connection under the destroy, so it waits until the end.
            boolean interrupted = Thread.interrupted();
            try {
                endNow();
            } finally {
                if (interrupted) {
                    Thread.currentThread().interrupt();
                }
            }
            return true;
        }

        private void endNow() {
            try {
                cli.call(new Requests.Destroy(id));
            } catch (ControlClient.RemoteException e) {
                // ESRCH: already gone (its lease ran out after its backup died, or the daemon restarted)
                if (!"ENODEV".equals(e.errnoName()) && !"ESRCH".equals(e.errnoName())) {
                    cli.warn("backup: cannot destroy snapshot " + id + ": " + e.errnoName() + ": " + e.getMessage());
                }
            } catch (Exception e) {
                cli.warn("backup: cannot destroy snapshot " + id + ": " + e.getMessage());
            }
            Thread s = stretch;
            if (s != null) {
                try {
                    s.join(10_000);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            if (storage != null && Files.isDirectory(storage)) {
                try {
                    FileTrees.deleteRecursively(storage);
                } catch (IOException e) {
                    cli.warn("backup: cannot remove the storage " + storage + ": " + e.getMessage());
                }
            }
            afterEnd.run();
        }
    }

    /** {@code DEVICE POINT_ID full|incremental BYTES_READ NEW_BYTES}. */
    static String backupLine(BackupPoint p) {
        return p.device() + " " + p.id() + " " + p.kind() + " " + p.bytesRead() + " " + p.newBytes();
    }

    @Command(name = "points", footer = EXIT_FOOTER, description = "List the points of a repository, oldest first.")
    static final class PointsCmd extends Commands.Base {
        @Mixin
        RepoOptions repo;
        @Option(names = "--device", paramLabel = "NAME", description = "only the points of this device")
        String device;
        @Option(names = "--host", paramLabel = "NAME", description = "only the points of this host")
        String host;

        @Override
        public Integer call() throws Exception {
            Cli cli = cli();
            try (Repository r = Repository.openForReading(repo.location(), repo.key())) {
                List<PointLine> points = r.points().stream().filter(p -> device == null || p.device().equals(device))
                        .filter(p -> host == null || p.host().equals(host)).map(PointLine::of).toList();
                if (device != null && points.isEmpty()) {
                    throw new RepositoryException(RepositoryException.Code.NOT_FOUND, "no point of device '" + device
                            + "'" + (host != null ? " of host '" + host + "'" : "") + " in " + r.location());
                }
                cli.print(new PointList(points), l -> String.join("\n", l.points().stream()
                        .map(p -> p.id() + " " + p.device() + " " + p.time() + " " + p.kind() + " generation="
                                + p.generation() + " snap_number=" + p.snapNumber() + " size=" + p.sizeBytes()
                                + " host=" + (p.host().isEmpty() ? "-" : p.host()))
                        .toList()));
            }
            return ExitCodes.OK;
        }
    }

    @Command(name = "restore", footer = EXIT_FOOTER, description = "Restore a point bit for bit to a new file (sparse), a block device or an NBD URI.")
    static final class RestoreCmd extends Commands.Base {
        @Mixin
        RepoOptions repo;
        @Option(names = "--point", required = true, paramLabel = "ID", description = "the point to restore (see points)")
        String point;
        @Option(names = "--to", required = true, paramLabel = "TARGET", description = "FILE, /dev/BLOCKDEVICE or nbd://...")
        String to;

        @Override
        public Integer call() throws Exception {
            Cli cli = cli();
            try (Repository r = Repository.openForReading(repo.location(), repo.key())) {
                Repository.RestoreResult res = r.restore(point, to, ProgressLine.of(cli, "restore " + point));
                cli.print(res, x -> "restored " + x.point() + " (" + x.device() + ", " + x.sizeBytes() + " bytes) to "
                        + x.target() + ": " + x.dataBytes() + " bytes of data, " + x.zeroBytes() + " bytes of zeros");
            }
            return ExitCodes.OK;
        }
    }

    @Command(name = "verify", footer = EXIT_FOOTER, description = "Re-hash every chunk and node the points use; report damaged or missing ones "
            + "with the points they break (exit 65).")
    static final class VerifyCmd extends Commands.Base {
        @Mixin
        RepoOptions repo;
        @Option(names = "--point", paramLabel = "ID", description = "only this point (default: all)")
        String point;

        @Override
        public Integer call() throws Exception {
            Cli cli = cli();
            try (Repository r = Repository.openForReading(repo.location(), repo.key())) {
                Repository.VerifyReport report = r.verify(point);
                cli.print(report, BackupCommands::verifyText);
                return report.ok() ? ExitCodes.OK : RepositoryException.Code.DAMAGED.exitStatus();
            }
        }
    }

    /** One point of {@code prune}: kept (with the rules that keep it) or removed. */
    record PruneLine(String id, String device, String time, boolean keep, List<String> reasons) {
    }

    record PruneReport(List<PruneLine> points, boolean dryRun) {
    }

    @Command(name = "prune", footer = EXIT_FOOTER, description = "Remove the points a retention policy does not keep (per device); "
            + "their chunks go at the next gc.")
    static final class PruneCmd extends Commands.Base {
        @Mixin
        RepoOptions repo;
        @Option(names = "--keep-last", paramLabel = "N", defaultValue = "0", description = "keep the newest N points of each device")
        int keepLast;
        @Option(names = "--keep-daily", paramLabel = "N", defaultValue = "0", description = "keep the newest point of each of the newest N days")
        int keepDaily;
        @Option(names = "--keep-weekly", paramLabel = "N", defaultValue = "0", description = "keep the newest point of each of the newest N ISO weeks")
        int keepWeekly;
        @Option(names = "--keep-monthly", paramLabel = "N", defaultValue = "0", description = "keep the newest point of each of the newest N months")
        int keepMonthly;
        @Option(names = "--dry-run", description = "say what would be removed, remove nothing")
        boolean dryRun;

        @Override
        public Integer call() throws Exception {
            org.blksnap.backup.Retention policy;
            try {
                policy = new org.blksnap.backup.Retention(keepLast, keepDaily, keepWeekly, keepMonthly);
            } catch (IllegalArgumentException e) {
                throw usage(e.getMessage());
            }
            Cli cli = cli();
            try (Repository r = Repository.openForMaintenance(repo.location(), repo.key(), cli::warn)) {
                List<PruneLine> lines = r.prune(policy, dryRun).stream().map(d -> new PruneLine(d.point().id(),
                        d.point().device(), d.point().time(), d.keep(), d.reasons())).toList();
                cli.print(new PruneReport(lines, dryRun), x -> String.join("\n", x.points().stream()
                        .map(l -> (l.keep() ? "keep   " : dryRun ? "would remove " : "remove ") + l.id() + " " + l.device()
                                + " " + l.time() + (l.keep() ? " (" + String.join(", ", l.reasons()) + ")" : ""))
                        .toList()));
            }
            return ExitCodes.OK;
        }
    }

    @Command(name = "gc", footer = EXIT_FOOTER, description = "Remove what no point uses: unused pack files, and "
            + "mostly unused ones after their live chunks are copied into new packs (older than the grace period).")
    static final class GcCmd extends Commands.Base {
        @Mixin
        RepoOptions repo;
        @Option(names = "--grace", paramLabel = "DURATION", defaultValue = "PT1H",
                description = "an unused pack is removed no sooner than this after a gc found it unused, ISO-8601 "
                        + "(default ${DEFAULT-VALUE}; PT0S: at once when no backup that began before is running)")
        java.time.Duration grace;
        @Option(names = "--repack-below", paramLabel = "PERCENT", defaultValue = "50",
                description = "repack a pack whose live chunks and nodes are less than PERCENT of its bytes: copy them "
                        + "into new packs, then remove it (default ${DEFAULT-VALUE}; 0: never, which keeps a format "
                        + "version 2 or 3 repository readable by older blksnap; 100: any pack with a dead byte)")
        int repackBelowPercent;
        @Option(names = "--repack-all", description = "repack every pack with a dead byte (as --repack-below 100)")
        boolean repackAll;
        @Option(names = "--dry-run", description = "say what would be repacked and removed, change nothing")
        boolean dryRun;

        @Override
        public Integer call() throws Exception {
            if (repackBelowPercent < 0 || repackBelowPercent > 100) {
                throw usage("--repack-below (" + repackBelowPercent + ") must be within 0..100");
            }
            if (repackAll && repackBelowPercent != 50 && repackBelowPercent != 100) {
                throw usage("--repack-all and --repack-below " + repackBelowPercent + " contradict each other");
            }
            double below = repackAll ? 1.0 : repackBelowPercent / 100.0;
            Cli cli = cli();
            try (Repository r = Repository.openForMaintenance(repo.location(), repo.key(), cli::warn)) {
                Repository.GcResult res = r.gc(grace, dryRun, below);
                cli.print(res, x -> (x.dryRun() ? "would remove " : "removed ") + x.packsRemoved().size() + " pack(s), "
                        + x.bytesRemoved() + " bytes freed; " + (x.dryRun() ? "would repack " : "repacked ")
                        + x.packsRepacked().size() + " pack(s), " + x.bytesMoved() + " bytes " + (x.dryRun() ? "to move"
                        : "moved into " + x.packsWritten() + " new pack(s)") + "; kept " + x.packsKept() + " in use by "
                        + x.points() + " point(s) and " + x.packsWaiting() + " condemned, waiting (condemned less than "
                        + grace + " ago, or while a backup that began before runs)");
            }
            return ExitCodes.OK;
        }
    }

    /** What {@code repo init} made. */
    record InitReport(String repo, String id, boolean encrypted, String keyFile) {
    }

    @Command(name = "repo", description = "Manage repositories.", subcommands = RepoCmd.InitCmd.class)
    static final class RepoCmd {
        @Command(name = "init", footer = EXIT_FOOTER, description = "Create a repository in a missing or empty directory "
                + "or S3 prefix; --encrypt makes an encrypted one and its key file (AES-256-GCM, docs/repository.md "
                + "\"Encryption\"). `backup` creates unencrypted repositories by itself.")
        static final class InitCmd extends Commands.Base {
            @Mixin
            RepoOptions repo;
            @Option(names = "--encrypt", description = "encrypt the repository with a new key, written to --key-file FILE "
                    + "(mode 0600; an existing file is never overwritten)")
            boolean encrypt;

            @Override
            public Integer call() throws Exception {
                Path keyFile = repo.keyFile();
                if (encrypt && keyFile == null) {
                    throw usage("--encrypt needs --key-file FILE (or $" + RepositoryKey.KEY_FILE_ENV + "): where the new key goes");
                }
                if (!encrypt && repo.keyFile != null) {
                    throw usage("--key-file " + repo.keyFile + " is given without --encrypt: an unencrypted repository has no key");
                }
                Cli cli = cli();
                RepositoryLocation where = repo.location();
                String id = Repository.init(where, encrypt ? keyFile : null);
                cli.print(new InitReport(where.toString(), id, encrypt, encrypt ? keyFile.toString() : null),
                        r -> "created " + (r.encrypted() ? "encrypted " : "") + "repository " + r.repo() + " (id " + r.id() + ")"
                                + (r.encrypted() ? "; its key is in " + r.keyFile() + ": keep a copy apart from the "
                                + "repository, for without it no point can be read" : ""));
                return ExitCodes.OK;
            }
        }
    }

    static String verifyText(Repository.VerifyReport r) {
        List<String> lines = new ArrayList<>();
        for (Repository.Problem p : r.problems()) {
            lines.add("DAMAGED " + p.what() + ": " + p.why() + (p.points().isEmpty() ? ""
                    : "; used by point(s) " + String.join(", ", p.points())));
        }
        for (String c : r.damagedCopies()) {
            lines.add("damaged copy " + c);
        }
        lines.add((r.ok() ? "ok: " : "FAILED: ") + r.points() + " point(s), " + r.blobs() + " chunks and nodes ("
                + r.bytes() + " bytes) checked, " + r.problems().size() + " problem(s)");
        return String.join("\n", lines);
    }
}
