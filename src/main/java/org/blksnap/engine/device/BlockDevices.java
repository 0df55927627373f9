package org.blksnap.engine.device;

import com.sun.nio.file.ExtendedOpenOption;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.blksnap.engine.BlockDevice;

/**
 * Opens block devices: regular files (created sparse when asked) and Linux block device nodes
 * (size and block size read from sysfs).
 */
public final class BlockDevices {
    private static final int S_IFMT = 0170000;
    private static final int S_IFBLK = 0060000;
    private static final int S_IFREG = 0100000;
    private static final int DEFAULT_LOGICAL_BLOCK = 512;

    private BlockDevices() {
    }

    /**
     * Opens a regular file or a block device read-write.
     *
     * @param path             the file or device node
     * @param createSizeBytes  if the path does not exist, create a sparse file of this size; 0 or less: do not create
     * @param direct           use O_DIRECT for aligned I/O
     * @throws IOException naming the path when it does not exist (and may not be created), is not a
     *                     regular file or block device, or cannot be opened
     */
    public static BlockDevice open(Path path, long createSizeBytes, boolean direct) throws IOException {
        return open(path, createSizeBytes, direct, NativeIo.system());
    }

    /** As {@link #open(Path, long, boolean)}, with the given native calls (tests pass a fake). */
    public static BlockDevice open(Path path, long createSizeBytes, boolean direct, NativeIo nativeIo) throws IOException {
        if (!Files.exists(path)) {
            if (createSizeBytes <= 0) {
                throw new IOException(path + " does not exist (give a size to create it)");
            }
            createSparse(path, createSizeBytes);
        }
        int mode = (Integer) Files.getAttribute(path, "unix:mode");
        boolean blockDevice = (mode & S_IFMT) == S_IFBLK;
        boolean regular = (mode & S_IFMT) == S_IFREG;
        if (!blockDevice && !regular) {
            throw new IOException(path + " is neither a regular file nor a block device");
        }
        List<OpenOption> options = new ArrayList<>(List.of(StandardOpenOption.READ, StandardOpenOption.WRITE));
        FileChannel channel = FileChannel.open(path, options.toArray(OpenOption[]::new));
        FileChannel directChannel = null;
        try {
            long size;
            int logical = DEFAULT_LOGICAL_BLOCK;
            int ioMin = DEFAULT_LOGICAL_BLOCK;
            if (blockDevice) {
                SysBlock info = SysBlock.of(path);
                size = info.sizeBytes();
                logical = info.logicalBlockSize();
                ioMin = Math.max(logical, info.minimumIoBytes());
            } else {
                size = channel.size();
            }
            if (direct) {
                options.add(ExtendedOpenOption.DIRECT);
                directChannel = FileChannel.open(path, options.toArray(OpenOption[]::new));
            }
            int handle = -1;
            if (regular && nativeIo.available()) {
                try {
                    handle = nativeIo.open(path, true);
                } catch (IOException e) {
                    handle = -1;
                }
            }
            return new FileBlockDevice(path, channel, directChannel, size, logical, ioMin, regular, nativeIo, handle);
        } catch (IOException | RuntimeException e) {
            channel.close();
            if (directChannel != null) {
                directChannel.close();
            }
            throw e;
        }
    }

    /** Creates a sparse regular file of {@code sizeBytes}; fails if it exists. */
    public static void createSparse(Path path, long sizeBytes) throws IOException {
        if (sizeBytes <= 0) {
            throw new IOException("size of " + path + " (" + sizeBytes + ") must be > 0");
        }
        Path parent = path.toAbsolutePath().getParent();
        if (parent != null) {
            Files.createDirectories(parent);
        }
        Files.createFile(path);
        try (RandomAccessFile raf = new RandomAccessFile(path.toFile(), "rw")) {
            raf.setLength(sizeBytes);
        }
    }

    /**
     * Where byte {@code offsetBytes} of the regular file {@code path} lies on the block device of
     * its filesystem, in bytes (FIEMAP); -1 when it lies nowhere there (a hole, data not yet
     * allocated, or a filesystem without block device or FIEMAP, such as tmpfs).
     *
     * @throws IOException the file cannot be opened, or FIEMAP failed otherwise
     */
    public static long physicalOffset(Path path, long offsetBytes) throws IOException {
        NativeIo nativeIo = NativeIo.system();
        if (!nativeIo.available()) {
            return -1;
        }
        int handle = nativeIo.open(path, false);
        try {
            return nativeIo.physicalOffset(handle, offsetBytes);
        } finally {
            nativeIo.close(handle);
        }
    }

    /** Whether the path is a block device node. */
    public static boolean isBlockDevice(Path path) throws IOException {
        int mode = (Integer) Files.getAttribute(path, "unix:mode");
        return (mode & S_IFMT) == S_IFBLK;
    }
}
