package org.blksnap.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.blksnap.testing.ExternalTool;
import org.blksnap.testing.NbdFuseMount;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Port of upstream 6000-snapimage_write (ext4 on the kernel instead of XFS): a filesystem on the
 * original; in each of three iterations a snapshot is taken (filesystem frozen), its image mounted,
 * and 10 MiB of files are written to the image and 10 MiB to the original at the same time; then
 * both are remounted (upstream drops the page cache) and checked at the same time, the image is
 * remounted and both are checked again. Each side holds exactly its own files, image writes survive the remount, and both
 * filesystems are clean.
 */
@Tag("system")
class ConcurrentImageWriteTest {
    private static final int ITERATIONS = 3;
    private static final int FILES = 10;
    private static final int FILE_BYTES = 1 << 20;

    @TempDir
    Path dir;

    @Test
    void imageAndOriginalWrittenConcurrentlyEachKeepTheirOwnFiles() throws Exception {
        try (DaemonHarness d = DaemonHarness.start(dir.resolve("data"), List.of("dev1=256M"),
                List.of("diff_storage_minimum=262144"));
             NbdFuseMount orig = NbdFuseMount.attach(d.uri("dev1"));
             ExecutorService two = Executors.newFixedThreadPool(2)) {
            orig.mkfsExt4();
            Path mntOrig = orig.mount();
            Map<String, String> onOriginal = new LinkedHashMap<>(FileSet.write(mntOrig, "before", 5, new Random(6000)));

            for (int it = 0; it < ITERATIONS; it++) {
                String id = d.ok("snapshot", "create", "--device", "dev1");
                d.ok("snapshot", "append-storage", "--id", id, "--file", dir.resolve("diff" + it).toString(),
                        "--size", "256M");
                d.ok("snapshot", "take", "--id", id, "--freeze", mntOrig.toString());
                Map<String, String> atTake = Map.copyOf(onOriginal);
                try (NbdFuseMount img = NbdFuseMount.attach(d.uri("blksnap-image0"))) {
                    Path mntImage = img.mount();
                    Random ri = new Random(100 + it);
                    Random ro = new Random(200 + it);
                    String tag = "it" + it + "-";
                    Future<Map<String, String>> toImage = two.submit(
                            () -> FileSet.write(mntImage, tag + "image", FILES, ri, FILE_BYTES, FILE_BYTES + 512));
                    Future<Map<String, String>> toOriginal = two.submit(
                            () -> FileSet.write(mntOrig, tag + "original", FILES, ro, FILE_BYTES, FILE_BYTES + 512));
                    Map<String, String> inImage = toImage.get();
                    Map<String, String> written = toOriginal.get();
                    onOriginal.putAll(written);
                    // Upstream drops the page cache here; remounting both drops what these two
                    // filesystems cached, without emptying the caches of the whole machine.
                    img.unmount();
                    orig.unmount();
                    Path origAgain = orig.mount();
                    Path imageAgain = img.mount();
                    checkBoth(two, imageAgain, atTake, inImage, origAgain, onOriginal, "after the writes");
                    img.unmount();
                    Path remounted = img.mount();
                    checkBoth(two, remounted, atTake, inImage, mntOrig, onOriginal, "after the image was remounted");
                    FileSet.checkAbsent(remounted, written, "written to the original after take");
                    FileSet.checkAbsent(mntOrig, inImage, "written to the image");
                    img.unmount();
                    ExternalTool.Result fsck = ExternalTool.run(Duration.ofSeconds(120), "e2fsck", "-fn", img.loopDevice());
                    assertThat(fsck.exitCode()).as("iteration %d: the image's filesystem is clean: %s", it, fsck.describe())
                            .isZero();
                }
                d.ok("snapshot", "destroy", "--id", id);
            }
            orig.unmount();
            Path again = orig.mount();
            FileSet.check(again, onOriginal);
            orig.unmount();
            ExternalTool.Result fsck = ExternalTool.run(Duration.ofSeconds(120), "e2fsck", "-fn", orig.loopDevice());
            assertThat(fsck.exitCode()).as("the original's filesystem is clean: %s", fsck.describe()).isZero();
        }
    }

    /** Checks the image and the original at the same time, as upstream does. */
    private static void checkBoth(ExecutorService two, Path image, Map<String, String> atTake, Map<String, String> inImage,
                                  Path original, Map<String, String> onOriginal, String when) throws Exception {
        Future<?> a = two.submit(() -> {
            FileSet.check(image, atTake);
            FileSet.check(image, inImage);
            return null;
        });
        Future<?> b = two.submit(() -> {
            FileSet.check(original, onOriginal);
            return null;
        });
        try {
            a.get();
            b.get();
        } catch (java.util.concurrent.ExecutionException e) {
            throw new AssertionError(when + ": " + e.getCause().getMessage(), e.getCause());
        }
    }
}
