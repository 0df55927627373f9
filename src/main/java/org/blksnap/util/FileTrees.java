package org.blksnap.util;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * Removing a directory tree: the one recursive delete of the code base (scratch directories of the
 * training, a backup's snapshot storage, test and benchmark work directories). The engine's state
 * keeps its own (flat, with the directory forced), as its layering forbids this package.
 */
public final class FileTrees {
    private FileTrees() {
    }

    /**
     * Deletes {@code root} and everything under it, deepest first; nothing if it does not exist.
     * Symbolic links are deleted, never followed. Not atomic: a failure leaves what was not deleted yet.
     *
     * @throws IOException naming the path that could not be listed or deleted
     */
    public static void deleteRecursively(Path root) throws IOException {
        if (root == null || !Files.exists(root, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        try (Stream<Path> all = Files.walk(root)) {
            for (Path p : all.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
