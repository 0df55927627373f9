package org.blksnap.engine.scenario;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.blksnap.util.FileTrees;
import org.junit.jupiter.api.extension.AnnotatedElementContext;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.io.TempDirFactory;

/**
 * Temporary directories on /dev/shm when it is there (the scenarios write gigabytes of devices and
 * storage; memory keeps them off the shared disk), else under java.io.tmpdir.
 */
public final class ShmTempDir implements TempDirFactory {
    private static final Path SHM = Path.of("/dev/shm");

    @Override
    public Path createTempDirectory(AnnotatedElementContext element, ExtensionContext context) throws IOException {
        return create();
    }

    /** A new empty directory; the caller deletes it with {@link #deleteRecursively}. */
    static Path create() throws IOException {
        if (Files.isDirectory(SHM) && Files.isWritable(SHM)) {
            return Files.createTempDirectory(SHM, "blksnap-scenario-");
        }
        return Files.createTempDirectory("blksnap-scenario-");
    }

    static void deleteRecursively(Path dir) throws IOException {
        FileTrees.deleteRecursively(dir);
    }
}
