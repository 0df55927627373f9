package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.UUID;
import java.util.function.Function;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.BlockDevice;
import org.blksnap.engine.CbtInfo;
import org.blksnap.engine.Errno;
import org.blksnap.engine.Params;
import org.blksnap.engine.SectorRange;
import org.blksnap.engine.StorageSpec;
import org.blksnap.engine.TakeHooks;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.device.NativeIo;
import org.blksnap.engine.module.BlksnapModule;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Model-based property: random sequences of I/O and control operations over 2-3 small devices
 * agree with a plain in-memory model.
 *
 * <p>The model holds each original as a byte array and, for each taken snapshot, the take-time
 * copy of its devices plus image writes, which chunks have a region, and how many regions the
 * appended storage holds (so it knows exactly when the storage overflows). Properties checked:
 * <ul>
 *   <li>every image read equals the model, or fails with EIO exactly when the model says the
 *       snapshot overflowed; every original read equals the model (original I/O never fails);</li>
 *   <li>CBT never misses a block, and marks nothing else: at each take, a block's read-map value is
 *       above the previous snap number exactly when it was written (original write, discard,
 *       write-zeroes, successful image write, mark-dirty) since the previous take, the snap number
 *       advances by one and the generation stays; between takes, the current read map shows image
 *       writes and mark-dirty at the current snap number;</li>
 *   <li>control errors: EBUSY for a device already in a snapshot, EFAULT (snapshot gone) for a take
 *       without storage, ENODEV for mark-dirty without a tracker.</li>
 * </ul>
 *
 * <p>Generation: each case is one seed; a {@link SplittableRandom} on it draws the configuration
 * and 1 to {@value #MAX_OPS} operations by fixed weights, with extra weight on the ends of every
 * range. A run draws {@value #CASES} case seeds from a fresh run seed ({@code -Dblksnap.model.cases=N}
 * for more); {@code -Dblksnap.model.seed=N} replays the one case that a failure names. A failing
 * sequence is shrunk before it is reported: cut after the failing operation, then runs of
 * operations are dropped, halving their length down to one, while the same kind of failure remains.
 * Operations carry raw numbers that are folded onto the current state (offsets modulo the device,
 * snapshot indices modulo the live ones), so every shrunk sequence is still valid.
 */
class EngineModelPropertyTest {
    private static final int SECTOR = 512;
    private static final int TRACKING_SHIFT = 12;
    private static final int TRACKING_BLOCK = 1 << TRACKING_SHIFT;
    private static final int MAX_DEVICE_SECTORS = 8192;
    /** Cases per run (jqwik ran 150 tries of the same generators). */
    private static final int CASES = 200;
    private static final int MAX_OPS = 50;
    /** Bounds the runs a shrink may make (each run takes a few milliseconds). */
    private static final int MAX_SHRINK_RUNS = 2_000;
    static final String SEED_PROPERTY = "blksnap.model.seed";
    static final String CASES_PROPERTY = "blksnap.model.cases";

    // ---- operations ------------------------------------------------------------------------

    sealed interface Op {
    }

    record OrigWrite(int dev, int sector, int sectors, int seed) implements Op {
    }

    record OrigDiscard(int dev, int sector, int sectors) implements Op {
    }

    record OrigZeroes(int dev, int sector, int sectors) implements Op {
    }

    record OrigRead(int dev, int sector, int sectors) implements Op {
    }

    record ImageRead(int snap, int dev, int sector, int sectors) implements Op {
    }

    record ImageWrite(int snap, int dev, int sector, int sectors, int seed) implements Op {
    }

    record ImageZeroes(int snap, int dev, int sector, int sectors) implements Op {
    }

    record ImageDiscard(int snap, int dev, int sector, int sectors) implements Op {
    }

    /** Create a snapshot of the devices in {@code mask} (never empty), append storage, take. */
    record CreateTake(int mask, int storageChunks) implements Op {
    }

    record Destroy(int snap) implements Op {
    }

    record Append(int snap, int chunks) implements Op {
    }

    record MarkDirty(int dev, int sector, int sectors) implements Op {
    }

    record CheckAll() implements Op {
    }

    record Config(List<Integer> deviceBlocks, int chunkShift, long seed) {
    }

    // ---- generation ------------------------------------------------------------------------

    /** One way to make an operation, drawn with probability {@code weight / sum of weights}. */
    private record Choice(int weight, Function<SplittableRandom, Op> make) {
    }

    private static final List<Choice> CHOICES = List.of(
            new Choice(14, r -> new OrigWrite(dev(r), sector(r), sectors(r), r.nextInt())),
            new Choice(2, r -> new OrigDiscard(dev(r), sector(r), sectors(r))),
            new Choice(2, r -> new OrigZeroes(dev(r), sector(r), sectors(r))),
            new Choice(2, r -> new OrigRead(dev(r), sector(r), sectors(r))),
            new Choice(6, r -> new ImageRead(snap(r), dev(r), sector(r), sectors(r))),
            new Choice(5, r -> new ImageWrite(snap(r), dev(r), sector(r), sectors(r), r.nextInt())),
            new Choice(1, r -> new ImageZeroes(snap(r), dev(r), sector(r), sectors(r))),
            new Choice(1, r -> new ImageDiscard(snap(r), dev(r), sector(r), sectors(r))),
            new Choice(5, r -> new CreateTake(between(r, 1, 7), storageChunks(r))),
            new Choice(3, r -> new Destroy(snap(r))),
            new Choice(1, r -> new Append(snap(r), between(r, 1, 8))),
            new Choice(2, r -> new MarkDirty(dev(r), sector(r), sectors(r))),
            new Choice(1, r -> new CheckAll()));
    private static final int TOTAL_WEIGHT = CHOICES.stream().mapToInt(Choice::weight).sum();

    /** A value in {@code [min, max]}; one draw in eight is an end of the range, where bugs live. */
    private static int between(SplittableRandom r, int min, int max) {
        return switch (r.nextInt(16)) {
            case 0 -> min;
            case 1 -> max;
            default -> r.nextInt(min, max + 1);
        };
    }

    private static int dev(SplittableRandom r) {
        return between(r, 0, 2);
    }

    private static int snap(SplittableRandom r) {
        return between(r, 0, 3);
    }

    private static int sector(SplittableRandom r) {
        return between(r, 0, MAX_DEVICE_SECTORS - 1);
    }

    private static int sectors(SplittableRandom r) {
        return between(r, 1, 160);
    }

    /** No storage (take fails), a little (it overflows), or plenty, weighted 1 : 3 : 6. */
    private static int storageChunks(SplittableRandom r) {
        int pick = r.nextInt(10);
        return pick < 1 ? 0 : pick < 4 ? between(r, 1, 12) : 4096;
    }

    static Config config(SplittableRandom r) {
        List<Integer> blocks = new ArrayList<>();
        for (int i = between(r, 2, 3); i > 0; i--) {
            blocks.add(between(r, 256, 1024));
        }
        return new Config(List.copyOf(blocks), between(r, 12, 14), r.nextLong());
    }

    static List<Op> ops(SplittableRandom r) {
        List<Op> ops = new ArrayList<>();
        for (int i = between(r, 1, MAX_OPS); i > 0; i--) {
            int pick = r.nextInt(TOTAL_WEIGHT);
            for (Choice c : CHOICES) {
                pick -= c.weight();
                if (pick < 0) {
                    ops.add(c.make().apply(r));
                    break;
                }
            }
        }
        return ops;
    }

    // ---- the property, replay and shrink --------------------------------------------------

    @Test
    void engineAgreesWithTheModel() throws Exception {
        Assumptions.assumeTrue(NativeIo.system().available(), "the model needs fallocate and SEEK_HOLE");
        String replay = System.getProperty(SEED_PROPERTY);
        if (replay != null) {
            check(Long.parseLong(replay.trim()));
            return;
        }
        SplittableRandom cases = new SplittableRandom();
        for (int i = Integer.getInteger(CASES_PROPERTY, CASES); i > 0; i--) {
            check(cases.nextLong());
        }
    }

    /** Runs the case of {@code seed}; on failure shrinks it and fails naming the seed and the smallest sequence. */
    private static void check(long seed) throws Exception {
        SplittableRandom r = new SplittableRandom(seed);
        Config config = config(r);
        List<Op> ops = ops(r);
        Failure failure = run(config, ops);
        if (failure == null) {
            return;
        }
        Failure smallest = shrink(config, ops, failure);
        StringBuilder m = new StringBuilder()
                .append("the engine disagrees with the model in case seed ").append(seed)
                .append(" (replay: -D").append(SEED_PROPERTY).append('=').append(seed).append(")\n")
                .append(config).append('\n')
                .append("smallest failing sequence, ").append(smallest.ops().size()).append(" of ").append(ops.size())
                .append(" operations, then a final CheckAll:\n");
        smallest.ops().forEach(op -> m.append("  ").append(op).append('\n'));
        m.append(smallest.failedAt() < smallest.ops().size() ? "fails at operation " + smallest.failedAt()
                : "fails at the final CheckAll").append(": ").append(smallest.error());
        AssertionError e = new AssertionError(m.toString(), smallest.error());
        if (smallest != failure) {
            e.addSuppressed(failure.error());
        }
        throw e;
    }

    /** A failing run: its operations, the index of the one that failed (size = the final check), the error. */
    private record Failure(List<Op> ops, int failedAt, Throwable error) {
        boolean sameKindAs(Failure other) {
            return other != null && error.getClass() == other.error.getClass();
        }
    }

    /** Runs {@code ops} and a final CheckAll on a fresh engine; null if the engine agreed with the model. */
    private static Failure run(Config config, List<Op> ops) throws IOException {
        Path dir = ShmTempDir.create();
        int at = 0;
        try (Run run = new Run(config, dir)) {
            for (; at < ops.size(); at++) {
                run.apply(ops.get(at));
            }
            run.apply(new CheckAll());
            return null;
        } catch (Exception | AssertionError e) {
            return new Failure(List.copyOf(ops), at, e);
        } finally {
            ShmTempDir.deleteRecursively(dir);
        }
    }

    /**
     * Cuts the sequence after the failing operation, then drops runs of operations, from half the
     * sequence down to single ones, keeping each drop that still fails the same way; again while
     * a pass made it shorter.
     */
    private static Failure shrink(Config config, List<Op> ops, Failure failure) throws IOException {
        Failure best = failure;
        int runs = 0;
        if (failure.failedAt() + 1 < ops.size()) {
            Failure cut = run(config, ops.subList(0, failure.failedAt() + 1));
            runs++;
            if (cut != null && cut.sameKindAs(failure)) {
                best = cut;
            }
        }
        int before;
        do {
            before = best.ops().size();
            for (int span = Math.max(1, before / 2); span >= 1 && runs < MAX_SHRINK_RUNS; span /= 2) {
                for (int from = 0; from < best.ops().size() && runs < MAX_SHRINK_RUNS; ) {
                    List<Op> fewer = new ArrayList<>(best.ops().subList(0, from));
                    fewer.addAll(best.ops().subList(Math.min(from + span, best.ops().size()), best.ops().size()));
                    Failure f = run(config, fewer);
                    runs++;
                    if (f != null && f.sameKindAs(failure)) {
                        best = f;
                    } else {
                        from += span;
                    }
                }
            }
        } while (best.ops().size() < before && runs < MAX_SHRINK_RUNS);
        return best;
    }

    // ---- the model and the runner ----------------------------------------------------------

    /** Per device: content and tracker state as the model sees them. */
    private static final class DeviceModel {
        final String name;
        final byte[] data;
        final int blocks;
        boolean tracked;
        int snapNumber;
        UUID generation;
        /** Blocks changed since the last take (or since the tracker was attached). */
        final BitSet dirty = new BitSet();
        /** Blocks an image write may have marked before it failed with EIO: either answer is right. */
        final BitSet maybeDirty = new BitSet();
        /** Blocks the read map showed changed at the last take. */
        final BitSet changedAtTake = new BitSet();
        /** Blocks mark-dirty or image writes raised in the current read map since the last take. */
        final BitSet markedSinceTake = new BitSet();
        SnapModel owner;

        DeviceModel(String name, byte[] data) {
            this.name = name;
            this.data = data;
            this.blocks = data.length / TRACKING_BLOCK;
        }
    }

    private static final class SnapModel {
        final UUID id;
        final List<DeviceModel> devices;
        final List<byte[]> images = new ArrayList<>();
        final List<BitSet> regions = new ArrayList<>();
        final List<String> imageNames = new ArrayList<>();
        long capacityChunks;
        long allocatedChunks;
        boolean overflowed;

        SnapModel(UUID id, List<DeviceModel> devices) {
            this.id = id;
            this.devices = devices;
        }

        /** Gives chunk {@code c} of device {@code i} a region; false (and overflowed) if none is left. */
        boolean allocate(int i, int c) {
            if (regions.get(i).get(c)) {
                return true;
            }
            if (overflowed) {
                return false;
            }
            if (allocatedChunks == capacityChunks) {
                overflowed = true;
                return false;
            }
            allocatedChunks++;
            regions.get(i).set(c);
            return true;
        }
    }

    private static final class Run implements AutoCloseable {
        final Blksnap engine;
        final Path dir;
        final int chunkBytes;
        final List<DeviceModel> devices = new ArrayList<>();
        final List<SnapModel> snapshots = new ArrayList<>();
        int files;

        Run(Config config, Path dir) throws IOException {
            this.dir = dir;
            this.chunkBytes = 1 << config.chunkShift();
            Params p = new Params();
            p.set("chunk_minimum_shift", config.chunkShift());
            p.set("tracking_block_minimum_shift", TRACKING_SHIFT);
            p.set("diff_storage_minimum", 2L * chunkBytes / SECTOR);
            engine = BlksnapModule.init(p);
            SplittableRandom r = new SplittableRandom(config.seed());
            for (int i = 0; i < config.deviceBlocks().size(); i++) {
                String name = "d" + i;
                long size = (long) config.deviceBlocks().get(i) * TRACKING_BLOCK;
                engine.addDevice(name, BlockDevices.open(dir.resolve(name + ".img"), size, false));
                byte[] data = new byte[(int) size];
                r.nextBytes(data);
                engine.device(name).write(ByteBuffer.wrap(data.clone()), 0);
                devices.add(new DeviceModel(name, data));
            }
        }

        @Override
        public void close() {
            engine.close();
        }

        private DeviceModel dev(int raw) {
            return devices.get(raw % devices.size());
        }

        /** [offset, length) in bytes, folded into the device. */
        private static long[] range(int deviceBytes, int sector, int sectors) {
            int total = deviceBytes / SECTOR;
            int first = sector % total;
            int count = Math.min(sectors, total - first);
            return new long[] {(long) first * SECTOR, (long) count * SECTOR};
        }

        private static void setBlocks(BitSet set, long offset, long length) {
            set.set((int) (offset >>> TRACKING_SHIFT), (int) ((offset + length - 1) >>> TRACKING_SHIFT) + 1);
        }

        private static byte[] bytes(int length, int seed) {
            byte[] b = new byte[length];
            new SplittableRandom(seed).nextBytes(b);
            return b;
        }

        void apply(Op op) throws Exception {
            switch (op) {
                case OrigWrite w -> {
                    DeviceModel d = dev(w.dev());
                    long[] r = range(d.data.length, w.sector(), w.sectors());
                    byte[] data = bytes((int) r[1], w.seed());
                    engine.device(d.name).write(ByteBuffer.wrap(data), r[0]);
                    origChanged(d, r, data);
                }
                case OrigDiscard w -> {
                    DeviceModel d = dev(w.dev());
                    long[] r = range(d.data.length, w.sector(), w.sectors());
                    engine.device(d.name).discard(r[0], r[1]);
                    origChanged(d, r, new byte[(int) r[1]]);
                }
                case OrigZeroes w -> {
                    DeviceModel d = dev(w.dev());
                    long[] r = range(d.data.length, w.sector(), w.sectors());
                    engine.device(d.name).writeZeroes(r[0], r[1], false);
                    origChanged(d, r, new byte[(int) r[1]]);
                }
                case OrigRead rd -> {
                    DeviceModel d = dev(rd.dev());
                    long[] r = range(d.data.length, rd.sector(), rd.sectors());
                    assertSameBytes(Io.read(engine.device(d.name), r[0], (int) r[1]),
                            Arrays.copyOfRange(d.data, (int) r[0], (int) (r[0] + r[1])), "%s at %d+%d", d.name, r[0], r[1]);
                }
                case ImageRead rd -> {
                    SnapModel s = snap(rd.snap());
                    if (s != null) {
                        int i = rd.dev() % s.devices.size();
                        long[] r = range(s.images.get(i).length, rd.sector(), rd.sectors());
                        checkImage(s, i, r[0], (int) r[1]);
                    }
                }
                case ImageWrite w -> {
                    SnapModel s = snap(w.snap());
                    if (s != null) {
                        int i = w.dev() % s.devices.size();
                        long[] r = range(s.images.get(i).length, w.sector(), w.sectors());
                        byte[] data = bytes((int) r[1], w.seed());
                        imageWrite(s, i, r, data, () -> image(s, i).write(ByteBuffer.wrap(data), r[0]));
                    }
                }
                case ImageZeroes w -> {
                    SnapModel s = snap(w.snap());
                    if (s != null) {
                        int i = w.dev() % s.devices.size();
                        long[] r = range(s.images.get(i).length, w.sector(), w.sectors());
                        imageWrite(s, i, r, new byte[(int) r[1]], () -> image(s, i).writeZeroes(r[0], r[1], false));
                    }
                }
                case ImageDiscard w -> {
                    SnapModel s = snap(w.snap());
                    if (s != null) {
                        int i = w.dev() % s.devices.size();
                        long[] r = range(s.images.get(i).length, w.sector(), w.sectors());
                        image(s, i).discard(r[0], r[1]);
                    }
                }
                case CreateTake c -> createTake(c);
                case Destroy x -> {
                    SnapModel s = snap(x.snap());
                    if (s != null) {
                        engine.snapshotDestroy(s.id);
                        snapshots.remove(s);
                        for (DeviceModel d : s.devices) {
                            d.owner = null;
                        }
                        assertThat(Io.errnoOf(() -> Io.read(engine.image(s.imageNames.get(0)), 0, SECTOR)))
                                .as("image of a destroyed snapshot").isEqualTo(Errno.ENODEV);
                    } else {
                        assertThat(Io.errnoOf(() -> engine.snapshotDestroy(UUID.randomUUID()))).isEqualTo(Errno.ENODEV);
                    }
                }
                case Append a -> {
                    SnapModel s = snap(a.snap());
                    if (s != null) {
                        appendChunks(s.id, a.chunks());
                        s.capacityChunks += a.chunks();
                    }
                }
                case MarkDirty m -> {
                    DeviceModel d = dev(m.dev());
                    long[] r = range(d.data.length, m.sector(), m.sectors());
                    List<SectorRange> ranges = List.of(new SectorRange(r[0] / SECTOR, r[1] / SECTOR));
                    Errno e = Io.errnoOf(() -> engine.trackerMarkDirty(d.name, ranges));
                    if (!d.tracked) {
                        assertThat(e).as("mark-dirty of %s without a tracker", d.name).isEqualTo(Errno.ENODEV);
                    } else {
                        assertThat(e).as("mark-dirty of %s", d.name).isNull();
                        setBlocks(d.dirty, r[0], r[1]);
                        setBlocks(d.markedSinceTake, r[0], r[1]);
                    }
                }
                case CheckAll c -> checkAll();
            }
        }

        /** Byte arrays of up to a few MiB: the report names the first differing byte instead of printing both. */
        private static void assertSameBytes(byte[] actual, byte[] expected, String what, Object... args) {
            assertThat(Arrays.mismatch(actual, expected)).as("%s: first byte that differs from the model (-1: none)",
                    String.format(what, args)).isEqualTo(-1);
        }

        private BlockDevice image(SnapModel s, int i) {
            return engine.image(s.imageNames.get(i));
        }

        private SnapModel snap(int raw) {
            return snapshots.isEmpty() ? null : snapshots.get(raw % snapshots.size());
        }

        private void appendChunks(UUID id, long chunks) {
            engine.snapshotAppendStorage(id, StorageSpec.create(dir.resolve("diff" + files++), chunks * chunkBytes));
        }

        private void origChanged(DeviceModel d, long[] r, byte[] data) {
            if (d.tracked) {
                setBlocks(d.dirty, r[0], r[1]);
            }
            SnapModel s = d.owner;
            if (s != null) {
                int i = s.devices.indexOf(d);
                for (int c = (int) (r[0] / chunkBytes); c <= (r[0] + r[1] - 1) / chunkBytes; c++) {
                    if (!s.allocate(i, c)) {
                        break;
                    }
                }
            }
            System.arraycopy(data, 0, d.data, (int) r[0], data.length);
        }

        private void imageWrite(SnapModel s, int i, long[] r, byte[] data, Io.ThrowingRunnable write) {
            DeviceModel d = s.devices.get(i);
            boolean fits = !s.overflowed;
            for (int c = (int) (r[0] / chunkBytes); fits && c <= (r[0] + r[1] - 1) / chunkBytes; c++) {
                fits = s.allocate(i, c);
            }
            Errno e = Io.errnoOf(write);
            if (fits) {
                assertThat(e).as("image write %s %d+%d", d.name, r[0], r[1]).isNull();
                System.arraycopy(data, 0, s.images.get(i), (int) r[0], data.length);
                setBlocks(d.dirty, r[0], r[1]);
                setBlocks(d.markedSinceTake, r[0], r[1]);
            } else {
                assertThat(e).as("image write %s %d+%d after the storage overflowed", d.name, r[0], r[1])
                        .isEqualTo(Errno.EIO);
                setBlocks(d.maybeDirty, r[0], r[1]);
            }
        }

        private void checkImage(SnapModel s, int i, long offset, int length) throws IOException {
            BlockDevice img = image(s, i);
            if (s.overflowed) {
                assertThat(Io.errnoOf(() -> Io.read(img, offset, length))).as("read of an overflowed image")
                        .isEqualTo(Errno.EIO);
                return;
            }
            assertSameBytes(Io.read(img, offset, length), Arrays.copyOfRange(s.images.get(i), (int) offset, (int) offset + length),
                    "image of %s at %d+%d", s.devices.get(i).name, offset, length);
        }

        private void createTake(CreateTake c) {
            List<DeviceModel> chosen = new ArrayList<>();
            for (int i = 0; i < devices.size(); i++) {
                if ((c.mask() & (1 << i)) != 0) {
                    chosen.add(devices.get(i));
                }
            }
            if (chosen.isEmpty()) {
                chosen.add(devices.get(0));
            }
            List<String> names = chosen.stream().map(d -> d.name).toList();
            if (chosen.stream().anyMatch(d -> d.owner != null)) {
                assertThat(Io.errnoOf(() -> engine.snapshotCreate(names))).as("create over a busy device")
                        .isEqualTo(Errno.EBUSY);
                return;
            }
            UUID id = engine.snapshotCreate(names);
            for (DeviceModel d : chosen) {
                if (!d.tracked) {
                    d.tracked = true;
                    d.dirty.clear();
                    d.maybeDirty.clear();
                }
            }
            if (c.storageChunks() == 0) {
                assertThat(Io.errnoOf(() -> engine.snapshotTake(id, TakeHooks.NONE))).as("take without storage")
                        .isEqualTo(Errno.EFAULT);
                assertThat(engine.snapshotCollect()).doesNotContain(id);
                return;
            }
            appendChunks(id, c.storageChunks());
            engine.snapshotTake(id, TakeHooks.NONE);
            SnapModel s = new SnapModel(id, chosen);
            s.capacityChunks = c.storageChunks();
            s.imageNames.addAll(engine.snapshotCollectImages(id).stream().map(x -> x.image()).toList());
            assertThat(s.imageNames).hasSize(chosen.size());
            for (DeviceModel d : chosen) {
                d.owner = s;
                s.images.add(d.data.clone());
                s.regions.add(new BitSet());
                checkCbtAtTake(d);
            }
            snapshots.add(s);
        }

        private void checkCbtAtTake(DeviceModel d) {
            CbtInfo info = engine.cbtInfo(d.name);
            int previous = d.snapNumber;
            assertThat(info.snapNumber()).as("%s snap number", d.name).isEqualTo(previous + 1);
            assertThat(info.blockSizeBytes()).isEqualTo(TRACKING_BLOCK);
            assertThat(info.blockCount()).isEqualTo(d.blocks);
            if (d.generation != null) {
                assertThat(info.generationId()).as("%s generation", d.name).isEqualTo(d.generation);
            }
            d.generation = info.generationId();
            byte[] map = engine.trackerReadCbtMap(d.name, 0, d.blocks);
            assertThat(map).hasSize(d.blocks);
            BitSet changed = new BitSet();
            for (int b = 0; b < d.blocks; b++) {
                if (Byte.toUnsignedInt(map[b]) > previous) {
                    changed.set(b);
                }
            }
            BitSet missed = (BitSet) d.dirty.clone();
            missed.andNot(changed);
            assertThat(missed.stream().boxed().toList()).as("%s: blocks written since snapshot %d but not marked", d.name, previous).isEmpty();
            BitSet extra = (BitSet) changed.clone();
            extra.andNot(d.dirty);
            extra.andNot(d.maybeDirty);
            assertThat(extra.stream().boxed().toList()).as("%s: blocks marked changed since snapshot %d but never written", d.name, previous)
                    .isEmpty();
            d.snapNumber = info.snapNumber();
            d.changedAtTake.clear();
            d.changedAtTake.or(changed);
            d.dirty.clear();
            d.maybeDirty.clear();
            d.markedSinceTake.clear();
        }

        /** Between takes: the current read map shows the take-time changes plus image writes and mark-dirty. */
        private void checkCurrentCbt(DeviceModel d) {
            byte[] map = engine.trackerReadCbtMap(d.name, 0, d.blocks);
            for (int b = 0; b < d.blocks; b++) {
                int v = Byte.toUnsignedInt(map[b]);
                boolean expected = d.changedAtTake.get(b) || d.markedSinceTake.get(b);
                if (d.maybeDirty.get(b) && !expected) {
                    continue;
                }
                assertThat(v == d.snapNumber).as("%s block %d read-map value %d, snap number %d", d.name, b, v,
                        d.snapNumber).isEqualTo(expected);
                assertThat(v).isLessThanOrEqualTo(d.snapNumber);
            }
        }

        private void checkAll() throws IOException {
            for (DeviceModel d : devices) {
                assertSameBytes(Io.read(engine.device(d.name), 0, d.data.length), d.data, "original %s", d.name);
            }
            for (SnapModel s : snapshots) {
                for (int i = 0; i < s.devices.size(); i++) {
                    checkImage(s, i, 0, s.images.get(i).length);
                    checkCurrentCbt(s.devices.get(i));
                }
            }
        }
    }

}
