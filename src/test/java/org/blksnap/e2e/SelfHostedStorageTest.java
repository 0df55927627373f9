package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.NbdFuseMount;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Upstream 4000-diff_storage in the port: difference storage in a file of a filesystem that is
 * itself mounted from one of our exports (kernel ext4 on nbdfuse + loop over device d0). Its
 * copy-on-write writes would come back through d0's own tracker, so the daemon refuses it (EINVAL,
 * naming the export) while files are being written to that filesystem, changes nothing, and keeps
 * working: the same snapshot takes with storage elsewhere, under the same writes, and its image
 * holds exactly the files of take time. More storage in a filesystem on the snapshot's own image is
 * refused alike.
 */
@Tag("system")
class SelfHostedStorageTest {
    @TempDir
    Path dir;

    @Test
    void storageOnAFilesystemServedFromOurOwnExportIsRefusedAndTheDaemonGoesOn() throws Exception {
        try (DaemonHarness d = DaemonHarness.start(dir.resolve("data"), List.of("d0=256M"),
                List.of("diff_storage_minimum=65536"));
             NbdFuseMount m = NbdFuseMount.attach(d.uri("d0"))) {
            m.mkfsExt4();
            Path mnt = m.mount();
            Map<String, String> before = FileSet.write(mnt, "before", 9, new Random(4000));
            AtomicBoolean run = new AtomicBoolean(true);
            List<String> writerErrors = Collections.synchronizedList(new ArrayList<>());
            Map<String, String> during = new ConcurrentHashMap<>();
            Thread writer = Thread.ofPlatform().start(() -> {
                Random r = new Random(4001);
                for (int round = 0; run.get(); round++) {
                    try {
                        during.putAll(FileSet.write(mnt, "load" + round + "-", 4, r));
                    } catch (Exception e) {
                        writerErrors.add(e.toString());
                        return;
                    }
                }
            });
            try {
                String id = d.ok("snapshot", "create", "--device", "d0");
                Path onExport = mnt.resolve("diff_storage");
                var refused = d.fails(22, "EINVAL", "snapshot", "append-storage", "--id", id, "--file",
                        onExport.toString(), "--size", "64M");
                assertThat(refused.err()).contains("served by this daemon from device d0").contains("deadlock");
                assertThat(onExport).as("nothing is created for refused storage").doesNotExist();
                try (var files = Files.list(mnt)) {
                    assertThat(files.map(p -> p.getFileName().toString()))
                            .as("the probe file is gone").noneMatch(n -> n.startsWith(".blksnap-probe"));
                }

                d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("diff_storage").toString(),
                        "--size", "128M");
                d.ok("snapshot", "take", "--id", id, "--freeze", mnt.toString());
                Map<String, String> atTake = Map.copyOf(during);
                Thread.sleep(500); // the writer goes on: copy-on-write into the good storage
                try (NbdFuseMount img = NbdFuseMount.attach(d.uri("blksnap-image0"))) {
                    Path image = img.mount();
                    FileSet.check(image, before);
                    FileSet.check(image, atTake);

                    // more storage in a filesystem on the snapshot's own image is ours too
                    var onImage = d.fails(22, "EINVAL", "snapshot", "append-storage", "--id", id, "--file",
                            image.resolve("more_storage").toString(), "--size", "16M");
                    assertThat(onImage.err()).contains("served by this daemon from image blksnap-image0");
                    FileSet.check(image, before);
                    img.unmount();
                }
                d.ok("snapshot", "destroy", "--id", id);
            } finally {
                run.set(false);
                writer.join();
            }
            assertThat(writerErrors).as("writes to the filesystem on the export").isEmpty();
            FileSet.check(mnt, before);
            FileSet.check(mnt, during);
            m.unmount();
            ExternalTool.Result fsck = ExternalTool.run(java.time.Duration.ofSeconds(120), "e2fsck", "-fn",
                    m.loopDevice());
            assertThat(fsck.exitCode()).as("the original's filesystem is clean: %s", fsck.describe()).isZero();
        }
    }
}
