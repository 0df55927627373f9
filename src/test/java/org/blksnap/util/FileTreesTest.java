package org.blksnap.util;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link FileTrees#deleteRecursively}: the whole tree goes, a link goes without what it points to, nothing is an error. */
class FileTreesTest {
    @TempDir
    Path dir;

    @Test
    void aNestedTreeGoesAndALinkInItLeavesItsTargetAlone() throws Exception {
        Path keep = Files.createDirectories(dir.resolve("keep"));
        Files.writeString(keep.resolve("precious"), "x");
        Path root = Files.createDirectories(dir.resolve("root/a/b"));
        Files.writeString(root.resolve("f"), "data");
        Files.writeString(dir.resolve("root/top"), "data");
        Files.createSymbolicLink(dir.resolve("root/a/link"), keep);

        FileTrees.deleteRecursively(dir.resolve("root"));

        assertThat(dir.resolve("root")).doesNotExist();
        assertThat(keep.resolve("precious")).hasContent("x");
    }

    @Test
    void aMissingPathOrNullIsNothingToDo() throws Exception {
        FileTrees.deleteRecursively(dir.resolve("never-created"));
        FileTrees.deleteRecursively(null);
        Path file = Files.writeString(dir.resolve("plain"), "y");
        FileTrees.deleteRecursively(file);
        assertThat(file).doesNotExist();
        assertThat(dir).exists();
    }
}
