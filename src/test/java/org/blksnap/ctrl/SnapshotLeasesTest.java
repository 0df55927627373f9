package org.blksnap.ctrl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.engine.Errnos.errnoOf;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.Errno;
import org.blksnap.engine.Params;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Leases on a real engine, with a clock the test moves. */
class SnapshotLeasesTest {
    private static final long S = 1_000_000_000L;

    @TempDir
    Path dir;
    Blksnap engine;
    final AtomicLong now = new AtomicLong(1_000 * S);
    SnapshotLeases leases;

    @BeforeEach
    void up() throws Exception {
        engine = BlksnapModule.init(new Params());
        for (int i = 0; i < 8; i++) {
            engine.addDevice("d" + i, BlockDevices.open(dir.resolve("d" + i + ".img"), 4L << 20, false));
        }
        leases = new SnapshotLeases(engine, now::get);
    }

    @AfterEach
    void down() {
        leases.close();
        engine.close();
    }

    @Test
    void aSnapshotLivesWhileRenewedAndIsDestroyedOneLeaseAfterTheLastRenewal() {
        UUID id = engine.snapshotCreate(List.of("d0"));
        leases.hold(id, 10);
        now.addAndGet(9 * S);
        assertThat(leases.lease(id)).as("seconds, milliseconds left").isEqualTo(new SnapshotLeases.Left(10, 1000));
        assertThat(leases.reapExpired()).isZero();
        leases.renew(id);
        assertThat(leases.lease(id)).isEqualTo(new SnapshotLeases.Left(10, 10_000));
        now.addAndGet(9 * S);
        assertThat(leases.reapExpired()).as("renewed 9 s ago").isZero();
        leases.touch(id); // a wait-event
        now.addAndGet(10 * S);
        assertThat(leases.reapExpired()).isEqualTo(1);
        assertThat(engine.snapshotCollect()).doesNotContain(id);
        assertThat(errnoOf(() -> leases.renew(id))).as("gone").isEqualTo(Errno.ESRCH);
    }

    @Test
    void renewingWithoutALeaseOrANumberOutOfRangeIsEinvalAndAnUnknownSnapshotEsrch() {
        UUID plain = engine.snapshotCreate(List.of("d0"));
        assertThat(leases.lease(plain)).isNull();
        assertThat(errnoOf(() -> leases.renew(plain))).isEqualTo(Errno.EINVAL);
        assertThat(errnoOf(() -> leases.renew(UUID.randomUUID()))).isEqualTo(Errno.ESRCH);
        assertThat(errnoOf(() -> SnapshotLeases.check(0))).isEqualTo(Errno.EINVAL);
        assertThat(errnoOf(() -> SnapshotLeases.check(SnapshotLeases.MAX_SECONDS + 1))).isEqualTo(Errno.EINVAL);
        now.addAndGet(1_000_000 * S);
        assertThat(leases.reapExpired()).as("a snapshot without a lease is never reaped").isZero();
        assertThat(engine.snapshotCollect()).contains(plain);
    }

    @Test
    void aSnapshotDestroyedOtherwiseIsForgottenAndItsExpiryHarmsNothing() {
        UUID a = engine.snapshotCreate(List.of("d0"));
        UUID b = engine.snapshotCreate(List.of("d1"));
        leases.hold(a, 5);
        leases.hold(b, 5);
        engine.snapshotDestroy(a);
        leases.forget(a);
        engine.snapshotDestroy(b); // destroyed without telling the leases: its expiry meets ESRCH quietly
        now.addAndGet(6 * S);
        assertThat(leases.reapExpired()).isZero();
        assertThat(engine.snapshotCollect()).isEmpty();
    }

    /** Renewers and the reaper at once: no renewed snapshot is ever destroyed; the abandoned ones all are. */
    @Test
    void renewalsRacingTheReaperNeverLoseALiveSnapshot() throws Exception {
        List<UUID> live = new ArrayList<>();
        List<UUID> abandoned = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            UUID id = engine.snapshotCreate(List.of("d" + i));
            leases.hold(id, 10);
            (i % 2 == 0 ? live : abandoned).add(id);
        }
        AtomicBoolean stop = new AtomicBoolean();
        CountDownLatch started = new CountDownLatch(live.size());
        List<Thread> renewers = new ArrayList<>();
        List<AtomicLong> renewals = new ArrayList<>();
        for (UUID id : live) {
            AtomicLong count = new AtomicLong();
            renewals.add(count);
            renewers.add(Thread.ofPlatform().start(() -> {
                started.countDown();
                while (!stop.get()) {
                    leases.renew(id); // throws (and the snapshot shows missing below) if it was reaped
                    count.incrementAndGet();
                }
            }));
        }
        started.await();
        for (int step = 0; step < 2_000; step++) {
            // the clock moves a millisecond a step: 2 s in all, far below a lease, yet past it for
            // anything not renewed once the clock is pushed at the end
            now.addAndGet(S / 1000);
            leases.reapExpired();
        }
        now.addAndGet(10 * S);
        // two more renewals of each live one: the second surely read the moved clock
        long[] before = renewals.stream().mapToLong(AtomicLong::get).toArray();
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() -> {
            for (int i = 0; i < before.length; i++) {
                if (renewals.get(i).get() < before[i] + 2) {
                    return false;
                }
            }
            return true;
        });
        leases.reapExpired(); // (the lease reaper's own thread may have been first)
        stop.set(true);
        for (Thread t : renewers) {
            t.join();
        }
        assertThat(engine.snapshotCollect()).containsAll(live).doesNotContainAnyElementsOf(abandoned);
    }
}
