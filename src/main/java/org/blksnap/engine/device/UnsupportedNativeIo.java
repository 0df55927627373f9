package org.blksnap.engine.device;

import java.io.IOException;
import java.nio.file.Path;

/** NativeIo where no native calls are possible: every call fails with an IOException. */
final class UnsupportedNativeIo implements NativeIo {
    static final UnsupportedNativeIo INSTANCE = new UnsupportedNativeIo();

    private UnsupportedNativeIo() {
    }

    private static IOException no(String what) {
        return new IOException(what + " is not supported on this system");
    }

    @Override
    public int open(Path path, boolean write) throws IOException {
        throw no("native open of " + path);
    }

    @Override
    public void close(int handle) {
    }

    @Override
    public void preallocate(int handle, long offsetBytes, long lengthBytes) throws IOException {
        throw no("fallocate");
    }

    @Override
    public void punchHole(int handle, long offsetBytes, long lengthBytes) throws IOException {
        throw no("punch hole");
    }

    @Override
    public long seekData(int handle, long offsetBytes) throws IOException {
        throw no("SEEK_DATA");
    }

    @Override
    public long seekHole(int handle, long offsetBytes) throws IOException {
        throw no("SEEK_HOLE");
    }

    @Override
    public boolean available() {
        return false;
    }
}
