package org.blksnap.nbd;

import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import org.blksnap.engine.device.BlockDevices;

/**
 * Serves one file as export "disk" (also the default export) on a Unix socket until killed, for
 * manual benchmarks against nbdkit: {@code java -cp ... org.blksnap.nbd.NbdServeMain FILE SOCKET}.
 * Not a test.
 */
final class NbdServeMain {
    private NbdServeMain() {
    }

    public static void main(String[] args) throws Exception {
        TestExports exports = new TestExports();
        exports.add("disk", "benchmark export", BlockDevices.open(Path.of(args[0]), 0, false), false);
        NbdServer server = new NbdServer(exports);
        server.listenUnix(Path.of(args[1]));
        new CountDownLatch(1).await();
    }
}
