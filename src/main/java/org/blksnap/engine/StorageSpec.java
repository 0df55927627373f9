package org.blksnap.engine;

import java.nio.file.Path;
import java.util.List;

/**
 * Storage to append to a snapshot's difference storage.
 *
 * @param path            a regular file or a block device
 * @param createSizeBytes if the file does not exist, create it with this size; 0: it must exist
 * @param preallocate     reserve the blocks of a file created here (fallocate)
 * @param ranges          sector ranges of the path to use; empty: the whole file or device
 */
public record StorageSpec(Path path, long createSizeBytes, boolean preallocate, List<SectorRange> ranges) {
    public StorageSpec {
        ranges = List.copyOf(ranges);
    }

    /** The whole existing file or device. */
    public static StorageSpec whole(Path path) {
        return new StorageSpec(path, 0, false, List.of());
    }

    /** A file created (if missing) with the given size, preallocated. */
    public static StorageSpec create(Path path, long sizeBytes) {
        return new StorageSpec(path, sizeBytes, true, List.of());
    }
}
