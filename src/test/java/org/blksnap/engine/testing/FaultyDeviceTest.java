package org.blksnap.engine.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.testing.FaultPlan.Op;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FaultyDeviceTest {
    private static final int SIZE = 1 << 20;

    @TempDir
    Path dir;

    private FaultyDevice dev;

    @BeforeEach
    void up() throws IOException {
        dev = new FaultyDevice(BlockDevices.open(dir.resolve("d.img"), SIZE, false));
    }

    @AfterEach
    void down() throws IOException {
        dev.close();
    }

    @Test
    void withoutRulesEverythingPassesThrough() throws IOException {
        dev.write(ByteBuffer.wrap(new byte[] {1, 2, 3}), 100);
        ByteBuffer b = ByteBuffer.allocate(3);
        dev.read(b, 100);
        dev.flush();
        assertThat(b.array()).containsExactly(1, 2, 3);
        assertThat(dev.sizeBytes()).isEqualTo(SIZE);
        assertThat(dev.faults().calls(Op.WRITE)).isEqualTo(1);
        assertThat(dev.faults().calls(Op.READ)).isEqualTo(1);
        assertThat(dev.faults().injected(Op.READ)).isZero();
    }

    @Test
    void aRangeRuleFailsOnlyCallsThatTouchTheRangeAndAFailedWriteChangesNothing() throws IOException {
        dev.faults().fail(Op.WRITE, 4096, 8192);
        assertThatThrownBy(() -> dev.write(ByteBuffer.wrap(new byte[] {9}), 8191))
                .isExactlyInstanceOf(IOException.class)
                .hasMessage(dir.resolve("d.img") + ": injected write fault at offset 8191 length 1");
        assertThatThrownBy(() -> dev.write(ByteBuffer.allocate(2), 4095)).isInstanceOf(IOException.class);
        assertThatThrownBy(() -> dev.writeZeroes(0, SIZE, true)).as("write-zeroes is a write").isInstanceOf(IOException.class);
        assertThatThrownBy(() -> dev.discard(5000, 1)).as("discard is a write").isInstanceOf(IOException.class);
        dev.write(ByteBuffer.wrap(new byte[] {7}), 8192);
        dev.write(ByteBuffer.wrap(new byte[] {7}), 4095);
        ByteBuffer b = ByteBuffer.allocate(1);
        dev.read(b, 8191);
        assertThat(b.get(0)).as("the failed write did not reach the device").isZero();
        assertThat(dev.faults().injected(Op.WRITE)).isEqualTo(4);
    }

    @Test
    void rulesAreSwitchedAtRunTime() throws IOException {
        dev.faults().fail(Op.FLUSH).fail(Op.READ);
        assertThatThrownBy(dev::flush).isInstanceOf(IOException.class).hasMessageContaining("injected flush fault");
        assertThatThrownBy(() -> dev.read(ByteBuffer.allocate(1), 0)).isInstanceOf(IOException.class);
        dev.faults().heal();
        dev.flush();
        dev.read(ByteBuffer.allocate(1), 0);
    }

    @Test
    void failAfterLetsTheGivenNumberOfCallsPassFirst() throws IOException {
        dev.faults().failAfter(Op.READ, 2);
        dev.read(ByteBuffer.allocate(1), 0);
        dev.read(ByteBuffer.allocate(1), 0);
        assertThatThrownBy(() -> dev.read(ByteBuffer.allocate(1), 0)).isInstanceOf(IOException.class);
        assertThatThrownBy(() -> dev.read(ByteBuffer.allocate(1), 0)).isInstanceOf(IOException.class);
        dev.write(ByteBuffer.allocate(1), 0); // other operations are not counted
    }

    @Test
    void badRulesAreRefused() {
        assertThatThrownBy(() -> dev.faults().fail(Op.READ, 10, 10)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("range [10, 10) must be non-empty and >= 0");
        assertThatThrownBy(() -> dev.faults().failAfter(Op.READ, -1)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("passingCalls (-1) must be >= 0");
    }

    /** Forbidden: more or fewer than N calls passing a fail-after-N rule when many threads race. */
    @Test
    void failAfterCountsExactlyUnderConcurrency() throws Exception {
        for (int round = 0; round < 20; round++) {
            FaultPlan plan = new FaultPlan("p");
            plan.failAfter(Op.WRITE, 100);
            AtomicInteger passed = new AtomicInteger();
            CountDownLatch go = new CountDownLatch(1);
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < 8; t++) {
                ts.add(Thread.ofPlatform().start(() -> {
                    try {
                        go.await();
                    } catch (InterruptedException e) {
                        throw new AssertionError(e);
                    }
                    for (int i = 0; i < 50; i++) {
                        try {
                            plan.check(Op.WRITE, i, 1);
                            passed.incrementAndGet();
                        } catch (IOException expected) {
                            // the 101st and later
                        }
                    }
                }));
            }
            go.countDown();
            for (Thread t : ts) {
                t.join();
            }
            assertThat(passed).hasValue(100);
            assertThat(plan.injected(Op.WRITE)).isEqualTo(300);
            assertThat(plan.calls(Op.WRITE)).isEqualTo(400);
        }
    }
}
