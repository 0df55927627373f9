package org.blksnap.engine.device;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Linux open/close/fallocate/lseek/ioctl(FS_IOC_FIEMAP)/copy_file_range through FFM. Probed once; if the linker or a symbol is missing
 * it logs one line and reports {@link #available()} false.
 */
@SuppressWarnings("restricted")
final class LinuxNativeIo implements NativeIo {
    static final LinuxNativeIo INSTANCE = new LinuxNativeIo();

    private static final Logger LOG = LoggerFactory.getLogger(LinuxNativeIo.class);
    private static final int O_RDONLY = 0;
    private static final int O_RDWR = 2;
    private static final int O_CLOEXEC = 0x80000;
    private static final int FALLOC_FL_KEEP_SIZE = 0x01;
    private static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    private static final int SEEK_DATA = 3;
    private static final int SEEK_HOLE = 4;
    private static final int ENXIO = 6;
    private static final int EOPNOTSUPP = 95;
    private static final int ENOTTY = 25;
    private static final int EINVAL = 22;
    private static final int EXDEV = 18;
    private static final int ENOSYS = 38;
    private static final int EINTR = 4;
    private static final long FS_IOC_FIEMAP = 0xC020660BL;
    private static final int FIEMAP_FLAG_SYNC = 0x1;
    private static final int FIEMAP_EXTENT_UNKNOWN = 0x2;
    private static final int FIEMAP_EXTENT_DATA_INLINE = 0x200;
    /*
     * struct fiemap (32 bytes) followed by one struct fiemap_extent (56 bytes):
     *   0 u64 fm_start | 8 u64 fm_length | 16 u32 fm_flags | 20 u32 fm_mapped_extents
     *  24 u32 fm_extent_count | 28 u32 fm_reserved
     *  32 u64 fe_logical | 40 u64 fe_physical | 48 u64 fe_length | 56 u64[2] reserved
     *  72 u32 fe_flags | 76 u32[3] reserved
     */
    private static final int FIEMAP_BYTES = 32 + 56;

    private final MethodHandle open;
    private final MethodHandle close;
    private final MethodHandle fallocate;
    private final MethodHandle lseek;
    private final MethodHandle ioctl;
    private final MethodHandle copyFileRange;
    private final boolean available;

    private LinuxNativeIo() {
        MethodHandle o = null;
        MethodHandle c = null;
        MethodHandle f = null;
        MethodHandle l = null;
        MethodHandle io = null;
        MethodHandle cfr = null;
        boolean ok = false;
        try {
            Linker linker = Linker.nativeLinker();
            SymbolLookup libc = linker.defaultLookup();
            Linker.Option errno = Linker.Option.captureCallState("errno");
            o = linker.downcallHandle(libc.find("open").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT), errno);
            c = linker.downcallHandle(libc.find("close").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
            f = linker.downcallHandle(libc.find("fallocate").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                            ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG), errno);
            l = linker.downcallHandle(libc.find("lseek").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG,
                            ValueLayout.JAVA_INT), errno);
            io = linker.downcallHandle(libc.find("ioctl").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG,
                            ValueLayout.ADDRESS), errno, Linker.Option.firstVariadicArg(2));
            // glibc >= 2.27; without it only the in-kernel copy is missing, not the rest
            cfr = libc.find("copy_file_range").map(a -> linker.downcallHandle(a,
                    FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                            ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT), errno))
                    .orElse(null);
            ok = System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT).contains("linux");
        } catch (Throwable t) {
            LOG.info("native file calls unavailable ({}); holes and preallocation are not used", t.toString());
        }
        open = o;
        close = c;
        fallocate = f;
        lseek = l;
        ioctl = io;
        copyFileRange = cfr;
        available = ok;
    }

    @Override
    public boolean available() {
        return available;
    }

    private static final java.lang.invoke.VarHandle ERRNO = Linker.Option.captureStateLayout()
            .varHandle(java.lang.foreign.MemoryLayout.PathElement.groupElement("errno"));

    private static int errno(MemorySegment state) {
        return (int) ERRNO.get(state, 0L);
    }

    private void requireAvailable(String what) throws IOException {
        if (!available) {
            throw new IOException(what + ": native file calls are not available");
        }
    }

    @Override
    public int open(Path path, boolean write) throws IOException {
        requireAvailable("open " + path);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(Linker.Option.captureStateLayout());
            int fd = (int) open.invokeExact(state, arena.allocateFrom(path.toString()), (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
            if (fd < 0) {
                throw new IOException("open " + path + " failed: errno " + errno(state));
            }
            return fd;
        } catch (IOException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("open " + path + " failed", t);
        }
    }

    @Override
    public long copyFileRange(int from, long fromOffsetBytes, int to, long toOffsetBytes, long lengthBytes)
            throws IOException {
        if (!available || copyFileRange == null) {
            throw new UnsupportedOperationException("copy_file_range is not available");
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(Linker.Option.captureStateLayout());
            MemorySegment offIn = arena.allocateFrom(ValueLayout.JAVA_LONG, fromOffsetBytes);
            MemorySegment offOut = arena.allocateFrom(ValueLayout.JAVA_LONG, toOffsetBytes);
            while (true) {
                long n = (long) copyFileRange.invokeExact(state, from, offIn, to, offOut, lengthBytes, 0);
                if (n >= 0) {
                    return n;
                }
                int e = errno(state);
                if (e == EINTR) {
                    continue;
                }
                if (e == EXDEV || e == EINVAL || e == ENOSYS || e == EOPNOTSUPP) {
                    throw new UnsupportedOperationException("copy_file_range: errno " + e);
                }
                throw new IOException("copy_file_range of " + lengthBytes + " bytes failed: errno " + e
                        + (e == 28 ? " (no space left on device)" : e == 5 ? " (I/O error)" : ""));
            }
        } catch (IOException | UnsupportedOperationException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("copy_file_range failed", t);
        }
    }

    @Override
    public void close(int handle) {
        if (!available) {
            return;
        }
        try {
            int rc = (int) close.invokeExact(handle);
            if (rc != 0) {
                LOG.debug("close({}) returned {}", handle, rc);
            }
        } catch (Throwable t) {
            LOG.debug("close({}) failed", handle, t);
        }
    }

    private void fallocate(int handle, int mode, long offsetBytes, long lengthBytes, String what) throws IOException {
        requireAvailable(what);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(Linker.Option.captureStateLayout());
            int rc = (int) fallocate.invokeExact(state, handle, mode, offsetBytes, lengthBytes);
            if (rc != 0) {
                throw new IOException(what + " at offset " + offsetBytes + " length " + lengthBytes
                        + " failed: errno " + errno(state));
            }
        } catch (IOException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException(what + " failed", t);
        }
    }

    @Override
    public void preallocate(int handle, long offsetBytes, long lengthBytes) throws IOException {
        fallocate(handle, FALLOC_FL_KEEP_SIZE, offsetBytes, lengthBytes, "fallocate");
    }

    @Override
    public void punchHole(int handle, long offsetBytes, long lengthBytes) throws IOException {
        fallocate(handle, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offsetBytes, lengthBytes, "punch hole");
    }

    private long seek(int handle, long offsetBytes, int whence) throws IOException {
        requireAvailable("lseek");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(Linker.Option.captureStateLayout());
            long rc = (long) lseek.invokeExact(state, handle, offsetBytes, whence);
            if (rc < 0) {
                int err = errno(state);
                if (err == ENXIO) {
                    return -1;
                }
                throw new IOException("lseek " + (whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE") + " at "
                        + offsetBytes + " failed: errno " + err);
            }
            return rc;
        } catch (IOException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("lseek failed", t);
        }
    }

    @Override
    public long seekData(int handle, long offsetBytes) throws IOException {
        return seek(handle, offsetBytes, SEEK_DATA);
    }

    @Override
    public long seekHole(int handle, long offsetBytes) throws IOException {
        return seek(handle, offsetBytes, SEEK_HOLE);
    }

    @Override
    public long physicalOffset(int handle, long offsetBytes) throws IOException {
        requireAvailable("FIEMAP");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(Linker.Option.captureStateLayout());
            MemorySegment fm = arena.allocate(FIEMAP_BYTES, 8);
            fm.set(ValueLayout.JAVA_LONG, 0, offsetBytes);
            fm.set(ValueLayout.JAVA_LONG, 8, 1);
            fm.set(ValueLayout.JAVA_INT, 16, FIEMAP_FLAG_SYNC);
            fm.set(ValueLayout.JAVA_INT, 24, 1);
            int rc = (int) ioctl.invokeExact(state, handle, FS_IOC_FIEMAP, fm);
            if (rc != 0) {
                int err = errno(state);
                if (err == EOPNOTSUPP || err == ENOTTY) {
                    return -1;
                }
                throw new IOException("FIEMAP at " + offsetBytes + " failed: errno " + err);
            }
            if (fm.get(ValueLayout.JAVA_INT, 20) < 1) {
                return -1;
            }
            long logical = fm.get(ValueLayout.JAVA_LONG, 32);
            long physical = fm.get(ValueLayout.JAVA_LONG, 40);
            long length = fm.get(ValueLayout.JAVA_LONG, 48);
            int flags = fm.get(ValueLayout.JAVA_INT, 72);
            if ((flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DATA_INLINE)) != 0 || offsetBytes < logical
                    || offsetBytes >= logical + length) {
                return -1;
            }
            return physical + (offsetBytes - logical);
        } catch (IOException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("FIEMAP failed", t);
        }
    }
}
