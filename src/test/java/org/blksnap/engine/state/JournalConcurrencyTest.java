package org.blksnap.engine.state;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import org.blksnap.engine.ParamValues;
import org.blksnap.engine.Persistence;
import org.blksnap.engine.tracker.TrackedDevice;
import org.blksnap.engine.tracker.Tracker;
import org.blksnap.testing.Concurrently;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The journal's group commit and the checkpoint's epoch switch under concurrency. Forbidden
 * outcomes: a write returns before its region is in the journal file; a region is journaled twice
 * in one epoch; more journal syncs than records; after a checkpoint raced the writers, a block that
 * was acknowledged is not marked in the recovered map (an under-report).
 */
class JournalConcurrencyTest {
    static final long MiB = 1 << 20;

    @TempDir
    Path dir;

    private StateStore store(Path state, long regionBytes) throws Exception {
        return StateStoreAccess.open(state, regionBytes);
    }

    private TrackedDevice device(String name, long sizeBytes) throws Exception {
        return StateStoreAccess.device(dir, name, sizeBytes);
    }

    @Test
    void concurrentFirstWritesShareSyncsAndNoneReturnsBeforeItsRegionIsJournaled() throws Exception {
        try (StateStore store = store(dir.resolve("state"), MiB)) {
            DeviceState st = StateStoreAccess.attachNew(store, device("d0", 8 * MiB));
            long epoch = st.epoch();
            int writers = 256;
            Concurrently.onPlatformThreads(writers, i -> {
                long offset = ThreadLocalRandom.current().nextLong(8 * MiB - 4096);
                st.recordWrite(offset, 4096);
                // acknowledged: every region it touched must be in the journal file now
                Set<Long> journaled = new java.util.HashSet<>();
                for (JournalDescriptor.Entry e : st.journalRecords((int) (epoch & 1))) {
                    if (e.epoch() == epoch) {
                        journaled.add(e.regionIndex());
                    }
                }
                for (long r = offset / MiB; r <= (offset + 4095) / MiB; r++) {
                    assertThat(journaled).as("write at %d returned before region %d was journaled", offset, r)
                            .contains(r);
                }
            });
            List<JournalDescriptor.Entry> records = st.journalRecords((int) (epoch & 1));
            assertThat(records).extracting(JournalDescriptor.Entry::regionIndex).doesNotHaveDuplicates()
                    .allMatch(r -> r >= 0 && r < 8);
            assertThat(records).allMatch(e -> e.epoch() == epoch && e.regionShift() == 20);
            assertThat(st.forces()).as("one sync per batch; a batch holds at least one new record")
                    .isBetween(1L, (long) records.size()).isLessThan(writers);
            // writes into recorded regions add nothing
            long forces = st.forces();
            for (int i = 0; i < 1000; i++) {
                st.recordWrite(ThreadLocalRandom.current().nextLong(8 * MiB - 1), 1);
            }
            assertThat(st.journalRecords((int) (epoch & 1))).hasSize(8);
            assertThat(st.forces()).isLessThanOrEqualTo(forces + 8 - records.size());
        }
    }

    /**
     * Crashes at random moments of writers racing checkpoints: an observer freezes the state's files
     * (no journal append, no checkpoint installed), copies the directory and the set of acknowledged
     * blocks, and lets go. Every block is written exactly once and a region is one tracking block, so
     * no later write covers for a lost mark (a copy taken outside the barrier, an epoch advanced after
     * the copy): each copy, recovered, must mark every block acknowledged before it was taken.
     */
    @Test
    void checkpointsRacingWritersNeverLoseAnAcknowledgedWriteWhereverTheCrashFalls() throws Exception {
        Path state = dir.resolve("state");
        long size = 256 * MiB;
        int writerCount = 16;
        Set<Long> acked = ConcurrentHashMap.newKeySet();
        List<Path> crashes = new ArrayList<>();
        List<Set<Long>> ackedAtCrash = new ArrayList<>();
        int checkpoints;
        try (StateStore store = store(state, 64 << 10)) {
            TrackedDevice d = device("d0", size);
            DeviceState st = StateStoreAccess.attachNew(store, d);
            AtomicBoolean writing = new AtomicBoolean(true);
            int[] done = new int[2];
            Thread checkpointer = Thread.ofPlatform().start(() -> {
                while (writing.get()) {
                    done[st.checkpoint() ? 0 : 1]++;
                }
            });
            Thread observer = Thread.ofPlatform().start(() -> {
                try {
                    while (writing.get()) {
                        Thread.sleep(ThreadLocalRandom.current().nextInt(20));
                        Path copy = dir.resolve("crash-" + crashes.size());
                        st.whileFrozen(() -> {
                            ackedAtCrash.add(Set.copyOf(acked));
                            copyTree(state, copy);
                        });
                        crashes.add(copy);
                    }
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
            });
            List<Thread> writers = writeEachBlockOnce(d, size >>> 16, writerCount, () -> 0,
                    (block, unused) -> acked.add(block));
            for (Thread w : writers) {
                w.join();
            }
            writing.set(false);
            checkpointer.join();
            observer.join();
            checkpoints = done[0];
            assertThat(done[1]).as("checkpoints that failed").isZero();
            assertThat(st.broken()).isFalse();
            d.backing().close();
        }
        assertThat(acked).hasSize((int) (size >>> 16));
        assertThat(checkpoints).as("checkpoints ran during the writes").isPositive();
        assertThat(crashes).as("crash points").isNotEmpty();
        forEachRecovered(crashes, size, (map, c) -> {
            for (long b : ackedAtCrash.get(c)) {
                assertThat(map.writeValue((int) b)).as("crash %d: block %d was acknowledged", c, b).isEqualTo(1);
            }
        });
    }

    /**
     * Takes racing writers, crashes at random moments: a taker switches the maps as a snapshot does
     * (barrier closed, switch, {@link StateStore.Take}), so takes go to the journal as records while
     * their checkpoints land in the background, or, when the one before has not landed yet, are
     * written as a checkpoint. Each write notes the number of takes that had returned before it
     * started; every block is written once and a region is one tracking block. Each crash copy,
     * recovered, must have a snapshot number between the takes returned and the takes begun at that
     * moment, and mark every acknowledged block above the number of the takes that had returned
     * before its write began (the number a backup tool holding that take asks for changes since).
     */
    @Test
    void takesRacingWritersNeverUnderReportWhereverTheCrashFalls() throws Exception {
        Path state = dir.resolve("state");
        long size = 32L << 30; // sparse: maps of 512 Ki blocks, so a checkpoint lands a while after its take
        long written = 128 * MiB;
        int writerCount = 8;
        java.util.Map<Long, Integer> acked = new ConcurrentHashMap<>();
        java.util.concurrent.atomic.AtomicInteger begun = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicInteger returned = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicInteger heldBack = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicReference<Throwable> failure = new java.util.concurrent.atomic.AtomicReference<>();
        List<Path> crashes = new ArrayList<>();
        List<java.util.Map<Long, Integer>> ackedAtCrash = new ArrayList<>();
        List<int[]> takesAtCrash = new ArrayList<>();
        long journaled;
        int takes;
        try (StateStore store = store(state, 64 << 10)) {
            TrackedDevice d = device("d0", size);
            DeviceState st = StateStoreAccess.attachNew(store, d);
            AtomicBoolean writing = new AtomicBoolean(true);
            DeviceState.FrozenAction crash = () -> {
                synchronized (crashes) {
                    Path copy = dir.resolve("crash-" + crashes.size());
                    st.whileFrozen(() -> {
                        int before = returned.get();
                        ackedAtCrash.add(java.util.Map.copyOf(acked));
                        copyTree(state, copy);
                        takesAtCrash.add(new int[] {before, begun.get()});
                    });
                    crashes.add(copy);
                }
            };
            Thread taker = Thread.ofPlatform().start(() -> {
                try {
                    Path tmp = state.resolve(StateStore.TRACKERS).resolve("d0").resolve(DeviceState.CHECKPOINT + ".tmp");
                    while (writing.get() && begun.get() < 200) {
                        // Every other take: its checkpoint held back (checkpoint.tmp cannot be created where a
                        // directory stands), the writers go on after the take, a crash, then it lands.
                        boolean holdBack = begun.get() % 2 == 1;
                        if (holdBack) {
                            store.awaitBackground(); // the checkpoint of the take before lands first
                            java.nio.file.Files.createDirectory(tmp);
                        }
                        begun.incrementAndGet();
                        try (StateStore.Take take = store.beginTake(List.of(d))) {
                            long stamp = d.closeBarrier();
                            try {
                                d.tracker().cbt().switchAtTake();
                                take.switched(d);
                            } finally {
                                d.openBarrier(stamp);
                            }
                            take.commit();
                        }
                        returned.incrementAndGet();
                        if (holdBack) {
                            Thread.sleep(5 + ThreadLocalRandom.current().nextInt(20));
                            crash.run();
                            store.awaitBackground();
                            java.nio.file.Files.delete(tmp);
                            assertThat(st.checkpoint()).as("the checkpoint held back").isTrue();
                            heldBack.incrementAndGet();
                        }
                        Thread.sleep(ThreadLocalRandom.current().nextInt(3));
                    }
                } catch (Exception | AssertionError e) {
                    failure.compareAndSet(null, e);
                }
            });
            Thread observer = Thread.ofPlatform().start(() -> {
                try {
                    while (writing.get()) {
                        Thread.sleep(ThreadLocalRandom.current().nextInt(20));
                        crash.run();
                    }
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
            });
            assertThat(d.tracker().cbt().blockSizeBytes()).isEqualTo(64 << 10);
            List<Thread> writers = writeEachBlockOnce(d, written >>> 16, writerCount, returned::get, acked::put);
            for (Thread w : writers) {
                w.join();
            }
            writing.set(false);
            taker.join();
            observer.join();
            store.awaitBackground();
            assertThat(failure.get()).as("the taker's failure").isNull();
            assertThat(st.broken()).isFalse();
            journaled = st.journaledTakes();
            takes = returned.get();
            d.backing().close();
        }
        assertThat(acked).hasSize((int) (written >>> 16));
        assertThat(takes).as("takes during the writes").isGreaterThan(2);
        assertThat(journaled).as("takes journaled as a record (of %d)", takes).isPositive();
        assertThat(heldBack.get()).as("takes whose checkpoint was held back past a crash").isPositive();
        assertThat(crashes).as("crash points").isNotEmpty();
        forEachRecovered(crashes, size, (map, c) -> {
            int[] at = takesAtCrash.get(c);
            assertThat(map.snapNumber()).as("crash %d: takes returned %d, begun %d", c, at[0], at[1])
                    .isBetween(at[0], at[1]);
            for (var e : ackedAtCrash.get(c).entrySet()) {
                assertThat(map.writeValue((int) (long) e.getKey()))
                        .as("crash %d: block %d, written after %d takes returned", c, e.getKey(), e.getValue())
                        .isGreaterThan(e.getValue());
            }
        });
    }

    /**
     * Restores device d0 of {@code sizeBytes} from each crash copy (regions of 64 KiB), checks it
     * stayed in its generation, and hands its map and the copy's index to {@code check}.
     */
    private void forEachRecovered(List<Path> crashes, long sizeBytes,
                                  java.util.function.ObjIntConsumer<org.blksnap.engine.tracker.CbtMap> check)
            throws Exception {
        TrackedDevice d = device("d0", sizeBytes);
        try {
            for (int c = 0; c < crashes.size(); c++) {
                try (StateStore again = StateStore.open(new Persistence(crashes.get(c), 64 << 10, Duration.ofHours(1)))) {
                    Tracker t = again.restore(d, ParamValues.DEFAULTS);
                    assertThat(t).as("crash %d", c).isNotNull();
                    assertThat(t.cbt().reason()).as("crash %d", c).isEqualTo(org.blksnap.engine.GenerationReason.NEW_TRACKER);
                    check.accept(t.cbt(), c);
                    d.setTracker(null);
                }
            }
        } finally {
            d.backing().close();
        }
    }

    /**
     * Virtual threads that together write 4 KiB at the start of each of the first {@code blocks} 64 KiB
     * blocks of {@code d} once, each thread its share in a random order; {@code acknowledged} gets each
     * block after its write returned, with what {@code before} gave right before the write began.
     */
    private static List<Thread> writeEachBlockOnce(TrackedDevice d, long blocks, int writerCount,
                                                   java.util.function.IntSupplier before,
                                                   java.util.function.BiConsumer<Long, Integer> acknowledged) {
        List<Thread> writers = new ArrayList<>();
        for (int w = 0; w < writerCount; w++) {
            List<Long> mine = new ArrayList<>();
            for (long b = w; b < blocks; b += writerCount) {
                mine.add(b);
            }
            java.util.Collections.shuffle(mine);
            writers.add(Thread.ofVirtual().start(() -> {
                ByteBuffer buf = ByteBuffer.allocate(4096);
                for (long block : mine) {
                    int token = before.getAsInt();
                    try {
                        d.write(buf.clear(), block << 16);
                    } catch (java.io.IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                    acknowledged.accept(block, token);
                }
            }));
        }
        return writers;
    }

    private static void copyTree(Path from, Path to) throws java.io.IOException {
        try (var walk = java.nio.file.Files.walk(from)) {
            for (Path p : (Iterable<Path>) walk::iterator) {
                java.nio.file.Files.copy(p, to.resolve(from.relativize(p).toString()));
            }
        }
    }
}
