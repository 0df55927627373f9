package org.blksnap.engine.diff;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.engine.Errnos.errnoOf;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.junit.jupiter.api.Test;

class AreaStateTest {
    private final RecordingOwner owner = new RecordingOwner();
    private final AtomicInteger drops = new AtomicInteger();
    private final AreaState state = new AreaState("d0", owner, drops::incrementAndGet);

    @Test
    void anIntactAreaIsUsable() {
        assertThat(state.corruption()).isNull();
        assertThat(state.stopped()).isFalse();
        assertThat(errnoOf(state::checkUsable)).isNull();
    }

    @Test
    void aDeclarationRecordsTheErrnoAtOnceAndTellsNobodyUntilReported() {
        AreaState.Report r = state.declareCorrupted(Errno.ENOSPC, "full");
        assertThat(state.corruption()).isEqualTo(Errno.ENOSPC);
        assertThat(state.stopped()).isTrue();
        assertThat(errnoOf(state::checkUsable)).isEqualTo(Errno.EIO);
        assertThat(owner.reports()).isEmpty();
        assertThat(drops).hasValue(0);

        state.report(r);
        assertThat(owner.reports()).containsExactly("d0:ENOSPC");
        assertThat(drops).as("cached buffers dropped").hasValue(1);
    }

    @Test
    void onlyTheFirstDeclarationWins() {
        state.markCorrupted(Errno.EIO, "first");
        assertThat(state.declareCorrupted(Errno.ENOSPC, "second")).isNull();
        state.markCorrupted(Errno.ENOSPC, "third");
        state.report(null);
        assertThat(state.corruption()).isEqualTo(Errno.EIO);
        assertThat(owner.reports()).containsExactly("d0:EIO");
        assertThat(drops).hasValue(1);
    }

    @Test
    void aChunkFailureCarriesTheErrnoOfABlksnapExceptionElseEio() {
        AreaState.Report r = state.declareChunkFailed(7, new BlksnapException(Errno.ENOSPC, "storage full"));
        assertThat(r).isEqualTo(new AreaState.Report(Errno.ENOSPC, "chunk 7: storage full"));
        AreaState other = new AreaState("d1", owner, () -> { });
        assertThat(other.declareChunkFailed(3, new IOException("bad sector")))
                .isEqualTo(new AreaState.Report(Errno.EIO, "chunk 3: bad sector"));
    }

    @Test
    void theSnapshotsCorruptionMakesTheAreaUnusableWithoutCorruptingIt() {
        owner.snapshotCorruption.set(Errno.ENODEV);
        assertThat(state.snapshotCorruption()).isEqualTo(Errno.ENODEV);
        assertThat(state.corruption()).isNull();
        assertThat(errnoOf(state::checkUsable)).isEqualTo(Errno.EIO);
    }

    @Test
    void aClosedAreaIsGoneAndIoThatFailedMeanwhileFailsAsDestroyed() {
        state.markCorrupted(Errno.EIO, "x");
        state.close();
        assertThat(state.isClosed()).isTrue();
        assertThat(errnoOf(state::checkUsable)).as("ENODEV wins over EIO").isEqualTo(Errno.ENODEV);
        BlksnapException gone = new BlksnapException(Errno.ENODEV, "gone");
        assertThat(state.destroyedDuring(gone)).isSameAs(gone);
        IOException io = new IOException("channel closed");
        assertThat(state.destroyedDuring(io).errno()).isEqualTo(Errno.ENODEV);
        assertThat(state.destroyedDuring(io)).hasCause(io);
    }

    /**
     * Forbidden: two reports for one area, or a reported errno other than the recorded one, when many
     * threads declare at once.
     */
    @Test
    void concurrentDeclarationsReportExactlyOnceWithTheRecordedErrno() throws Exception {
        Errno[] errnos = {Errno.EIO, Errno.ENOSPC, Errno.ESRCH, Errno.ENODEV};
        for (int round = 0; round < 200; round++) {
            RecordingOwner o = new RecordingOwner();
            AtomicInteger dropped = new AtomicInteger();
            AreaState s = new AreaState("d0", o, dropped::incrementAndGet);
            CountDownLatch go = new CountDownLatch(1);
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < 8; t++) {
                Errno e = errnos[t % errnos.length];
                ts.add(Thread.ofPlatform().start(() -> {
                    try {
                        go.await();
                    } catch (InterruptedException ex) {
                        throw new AssertionError(ex);
                    }
                    s.markCorrupted(e, "t");
                }));
            }
            go.countDown();
            for (Thread t : ts) {
                t.join();
            }
            assertThat(o.reports()).as("round %d", round).containsExactly("d0:" + s.corruption());
            assertThat(dropped).hasValue(1);
        }
    }
}
