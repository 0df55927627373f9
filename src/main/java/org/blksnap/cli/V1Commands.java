package org.blksnap.cli;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.blksnap.engine.SectorRange;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The upstream v1 tool's verbs with their option names, so that the upstream bash tests port by
 * replacing device paths with device names. They do what the new verbs do.
 */
final class V1Commands {
    private V1Commands() {
    }

    @Command(name = "snapshot_create", description = "v1 alias of 'snapshot create'.")
    static final class SnapshotCreate extends Main.Base {
        @Option(names = {"-d", "--device"}, required = true)
        List<String> devices = new ArrayList<>();

        @Override
        public Integer call() throws Exception {
            return cli().snapshotCreate(devices);
        }
    }

    @Command(name = "snapshot_appendstorage", description = "v1 alias of 'snapshot append-storage'.")
    static final class SnapshotAppendStorage extends Main.Base {
        @Option(names = {"-i", "--id"}, required = true, converter = Main.UuidConverter.class)
        UUID id;
        @Option(names = {"-f", "--file"}, required = true)
        Path file;
        @Option(names = {"-s", "--size"}, converter = Main.SizeConverter.class)
        Long size;
        @Option(names = {"-r", "--range"}, converter = Main.RangeConverter.class)
        List<SectorRange> ranges = new ArrayList<>();

        @Override
        public Integer call() throws Exception {
            return cli().appendStorage(id, file, size, ranges);
        }
    }

    @Command(name = "snapshot_take", description = "v1 alias of 'snapshot take'.")
    static final class SnapshotTake extends Main.Base {
        @Option(names = {"-i", "--id"}, required = true, converter = Main.UuidConverter.class)
        UUID id;
        @Option(names = "--freeze")
        List<Path> freeze = new ArrayList<>();

        @Override
        public Integer call() throws Exception {
            return cli().take(id, freeze);
        }
    }

    @Command(name = "snapshot_collect", description = "v1 alias of 'snapshot collect'.")
    static final class SnapshotCollect extends Main.Base {
        @Override
        public Integer call() throws Exception {
            return cli().snapshotCollect();
        }
    }

    @Command(name = "snapshot_waitevent", description = "v1 alias of 'snapshot wait-event'.")
    static final class SnapshotWaitEvent extends Main.Base {
        @Option(names = {"-i", "--id"}, required = true, converter = Main.UuidConverter.class)
        UUID id;
        @Option(names = {"-t", "--timeout"}, required = true)
        long timeoutMs;

        @Override
        public Integer call() throws Exception {
            return cli().waitEvent(id, timeoutMs);
        }
    }

    @Command(name = "snapshot_destroy", description = "v1 alias of 'snapshot destroy'.")
    static final class SnapshotDestroy extends Main.Base {
        @Option(names = {"-i", "--id"}, required = true, converter = Main.UuidConverter.class)
        UUID id;

        @Override
        public Integer call() throws Exception {
            return cli().destroy(id);
        }
    }

    @Command(name = "stretch_snapshot", description = "v1 alias of 'snapshot stretch' (--limit in MiB unless suffixed).")
    static final class StretchSnapshot extends Main.Base {
        @Option(names = {"-i", "--id"}, required = true, converter = Main.UuidConverter.class)
        UUID id;
        @Option(names = {"-p", "--path"}, required = true)
        Path dir;
        @Option(names = {"-l", "--limit"}, required = true, converter = Main.MibSizeConverter.class)
        long limit;

        @Override
        public Integer call() throws Exception {
            return cli().stretch(id, dir, limit, 1000);
        }
    }

    @Command(name = "tracker_collect", description = "v1 alias of 'tracker collect'.")
    static final class TrackerCollect extends Main.Base {
        @Override
        public Integer call() throws Exception {
            return cli().trackerCollect();
        }
    }

    @Command(name = "tracker_readcbtmap", description = "v1 alias of 'tracker read-cbt-map'.")
    static final class TrackerReadCbtMap extends Main.Base {
        @Option(names = {"-d", "--device"}, required = true)
        String device;
        @Option(names = {"-f", "--file"}, required = true)
        Path file;

        @Override
        public Integer call() throws Exception {
            return cli().readCbtMap(device, file, 0, null);
        }
    }

    @Command(name = "tracker_markdirtyblock", description = "v1 alias of 'tracker mark-dirty'.")
    static final class TrackerMarkDirtyBlock extends Main.Base {
        @Option(names = {"-d", "--device"}, required = true)
        String device;
        @Option(names = {"-r", "--ranges", "--range"}, required = true, converter = Main.RangeConverter.class)
        List<SectorRange> ranges = new ArrayList<>();

        @Override
        public Integer call() throws Exception {
            return cli().markDirty(device, ranges);
        }
    }

    @Command(name = "tracker_remove", description = "v1 alias of 'tracker remove'.")
    static final class TrackerRemove extends Main.Base {
        @Option(names = {"-d", "--device"}, required = true)
        String device;

        @Override
        public Integer call() throws Exception {
            return cli().trackerRemove(device);
        }
    }
}
