package org.blksnap.engine.snapshot;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.junit.jupiter.api.Test;

class ImageRegistryTest {

    @Test
    void numbersAreTheLowestFreeOnes() {
        ImageRegistry r = new ImageRegistry();
        assertThat(r.allocateNumber()).isZero();
        assertThat(r.allocateNumber()).isEqualTo(1);
        assertThat(r.allocateNumber()).isEqualTo(2);
        r.release(1);
        assertThat(r.allocateNumber()).isEqualTo(1);
        assertThat(r.allocateNumber()).isEqualTo(3);
    }

    @Test
    void unknownOrMalformedNamesAreEnodev() {
        ImageRegistry r = new ImageRegistry();
        for (String name : new String[] {"blksnap-image0", "blksnap-imagex", "disk0", null}) {
            assertThatThrownBy(() -> r.get(name)).isInstanceOfSatisfying(BlksnapException.class,
                    e -> assertThat(e.errno()).isEqualTo(Errno.ENODEV));
        }
    }

    @Test
    void concurrentAllocationsNeverHandOutANumberTwice() throws Exception {
        ImageRegistry r = new ImageRegistry();
        Set<Integer> held = ConcurrentHashMap.newKeySet();
        List<String> errors = new ArrayList<>();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
            ts.add(Thread.ofVirtual().start(() -> {
                for (int i = 0; i < 2000; i++) {
                    int n = r.allocateNumber();
                    if (!held.add(n)) {
                        synchronized (errors) {
                            errors.add("number " + n + " handed out twice");
                        }
                    }
                    held.remove(n);
                    r.release(n);
                }
            }));
        }
        for (Thread t : ts) {
            t.join();
        }
        assertThat(errors).isEmpty();
        assertThat(r.allocateNumber()).isZero();
    }
}
