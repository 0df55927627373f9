package org.blksnap.backup;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Restores one point, bit for bit, to a target: a new file (written as {@code FILE.partial},
 * created sparse, renamed to FILE when complete: zero chunks stay holes), a block device (zero
 * chunks written as zeros: the device's old content would show through), or an NBD URI (zero
 * chunks as NBD_CMD_WRITE_ZEROES when the server offers it). The point alone is read: no other
 * point is needed. Chunks are read, checked against their names and written by up to
 * {@link #IN_FLIGHT} virtual threads. Not thread-safe: {@link #run} once.
 */
final class Restore {
    static final int IN_FLIGHT = 8;
    /** Stored bytes fetched by one read at most (adjacent blobs of one pack; one GET on S3). */
    static final int RUN_BYTES = 4 << 20;
    /** Zeros written to a block device or an NBD export per request, in bytes. */
    static final int ZERO_PIECE_BYTES = 1 << 20;

    private final Repository repo;
    private final Point point;
    private final String target;
    private final Repository.Progress progress;

    Restore(Repository repo, Point point, String target, Repository.Progress progress) {
        this.repo = repo;
        this.point = point;
        this.target = target;
        this.progress = progress;
    }

    /** Where the bytes go; thread-safe. */
    interface Target extends AutoCloseable {
        long sizeBytes() throws RepositoryException;

        void write(long offsetBytes, byte[] data) throws RepositoryException;

        /** {@code lengthBytes} at {@code offsetBytes} must read as zeros. */
        void zero(long offsetBytes, long lengthBytes) throws RepositoryException;

        /** Makes everything durable and visible; a target not finished leaves nothing behind where it can. */
        void finish() throws RepositoryException;

        @Override
        void close();
    }

    Repository.RestoreResult run() throws RepositoryException {
        long startNanos = System.nanoTime();
        Geometry g = point.geometry();
        Ref root;
        try {
            root = ManifestDescriptor.rootRef(point);
        } catch (IllegalArgumentException e) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, "point " + point.id() + ": " + e.getMessage());
        }
        AtomicLong dataBytes = new AtomicLong();
        AtomicLong zeroBytes = new AtomicLong();
        try (Target t = open(g.sizeBytes())) {
            if (t.sizeBytes() < g.sizeBytes()) {
                throw new RepositoryException(RepositoryException.Code.TARGET, target + " is " + t.sizeBytes()
                        + " bytes, smaller than point " + point.id() + "'s " + g.sizeBytes());
            }
            AtomicReference<RepositoryException> failure = new AtomicReference<>();
            Semaphore inFlight = new Semaphore(IN_FLIGHT);
            BlobReader reader = repo.reader().forHost(point.host());
            try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
                IndexTree.walk(g, root, reader, new IndexTree.Visitor() {
                    /** Chunks whose blobs lie one after the other in one pack: fetched with one read. */
                    final java.util.List<Ref> run = new java.util.ArrayList<>();
                    int runFirst;
                    long runBytes;

                    @Override
                    public void hole(long firstChunk, long chunkCount) throws RepositoryException {
                        flush();
                        long off = g.chunkOffsetBytes((int) firstChunk);
                        long len = Math.min(g.sizeBytes(), g.chunkOffsetBytes((int) (firstChunk + chunkCount - 1))
                                + g.chunkSizeBytes()) - off;
                        t.zero(off, len);
                        progress.update(dataBytes.get() + zeroBytes.addAndGet(len), g.sizeBytes());
                    }

                    @Override
                    public void chunk(int chunkIndex, Ref ref) throws RepositoryException {
                        if (failure.get() != null) {
                            throw failure.get();
                        }
                        if (!run.isEmpty() && (runFirst + run.size() != chunkIndex || runBytes + ref.lengthBytes() > RUN_BYTES
                                || !BlobReader.adjacent(run.getLast(), ref))) {
                            flush();
                        }
                        if (run.isEmpty()) {
                            runFirst = chunkIndex;
                            runBytes = 0;
                        }
                        run.add(ref);
                        runBytes += ref.lengthBytes();
                    }

                    @Override
                    public void end() {
                        flush();
                    }

                    void flush() {
                        if (run.isEmpty()) {
                            return;
                        }
                        java.util.List<Ref> refs = java.util.List.copyOf(run);
                        int first = runFirst;
                        run.clear();
                        inFlight.acquireUninterruptibly();
                        pool.execute(() -> {
                            try {
                                java.util.List<byte[]> raws = reader.readRun(refs);
                                for (int i = 0; i < raws.size(); i++) {
                                    int chunkIndex = first + i;
                                    byte[] raw = raws.get(i);
                                    if (raw.length != g.chunkLengthBytes(chunkIndex)) {
                                        throw new RepositoryException(RepositoryException.Code.DAMAGED, refs.get(i) + " is "
                                                + raw.length + " bytes; chunk " + chunkIndex + " of point " + point.id()
                                                + " is " + g.chunkLengthBytes(chunkIndex));
                                    }
                                    t.write(g.chunkOffsetBytes(chunkIndex), raw);
                                    progress.update(dataBytes.addAndGet(raw.length) + zeroBytes.get(), g.sizeBytes());
                                }
                            } catch (RepositoryException e) {
                                failure.compareAndSet(null, e.code() != RepositoryException.Code.DAMAGED ? e
                                        : new RepositoryException(e.code(), "point " + point.id() + ", chunk"
                                        + (refs.size() == 1 ? " " + first : "s " + first + ".." + (first + refs.size() - 1))
                                        + ": " + e.getMessage(), e));
                            } finally {
                                inFlight.release();
                            }
                        });
                    }
                });
            }
            if (failure.get() != null) {
                throw failure.get();
            }
            t.finish();
        }
        return new Repository.RestoreResult(point.id(), point.device(), target, g.sizeBytes(), dataBytes.get(),
                zeroBytes.get(), (System.nanoTime() - startNanos) / 1e9);
    }

    private Target open(long sizeBytes) throws RepositoryException {
        if (NbdClient.isNbdUri(target)) {
            return new NbdTarget(NbdClient.connect(target));
        }
        Path path = Path.of(target).toAbsolutePath();
        if (Files.exists(path) && !Files.isRegularFile(path) && !Files.isDirectory(path)) {
            return new BlockDeviceTarget(path);
        }
        if (Files.exists(path)) {
            throw new RepositoryException(RepositoryException.Code.TARGET, target + " exists; restore writes a new file "
                    + "(remove it first), a block device or an NBD URI");
        }
        return new FileTarget(path, sizeBytes);
    }

    private static void writeFully(FileChannel ch, Path path, long offsetBytes, ByteBuffer buf) throws RepositoryException {
        long pos = offsetBytes;
        int length = buf.remaining();
        try {
            while (buf.hasRemaining()) {
                pos += ch.write(buf, pos);
            }
        } catch (IOException e) {
            throw RepositoryException.io("cannot write " + length + " bytes at offset " + offsetBytes + " of " + path, e);
        }
    }

    /** A new sparse file, written under a temporary name and renamed when complete. */
    private static final class FileTarget implements Target {
        private final java.util.concurrent.locks.ReentrantLock writeLock = new java.util.concurrent.locks.ReentrantLock();
        private final Path path;
        private final Path partial;
        private final FileChannel ch;
        private final long sizeBytes;
        private boolean finished;

        FileTarget(Path path, long sizeBytes) throws RepositoryException {
            this.path = path;
            this.partial = path.resolveSibling(path.getFileName() + ".partial");
            this.sizeBytes = sizeBytes;
            try {
                Files.deleteIfExists(partial);
                ch = FileChannel.open(partial, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE,
                        StandardOpenOption.SPARSE);
                // a sparse file of the point's size: zero chunks are never written and stay holes
                try (java.io.RandomAccessFile raf = new java.io.RandomAccessFile(partial.toFile(), "rw")) {
                    raf.setLength(sizeBytes);
                }
            } catch (IOException e) {
                throw RepositoryException.io("cannot create " + partial, e);
            }
        }

        @Override
        public long sizeBytes() {
            return sizeBytes;
        }

        /**
         * One writer at a time: a buffered write holds the file's inode lock anyway (tmpfs, ext4), and
         * concurrent writers spun on it in the kernel (a profile of a 4 GiB restore into tmpfs: 2 of
         * 16 CPU-seconds in rwsem_spin_on_owner); waiting here parks them instead, and the other core
         * decodes and hashes.
         */
        @Override
        public void write(long offsetBytes, byte[] data) throws RepositoryException {
            writeLock.lock();
            try {
                writeFully(ch, partial, offsetBytes, ByteBuffer.wrap(data));
            } finally {
                writeLock.unlock();
            }
        }

        @Override
        public void zero(long offsetBytes, long lengthBytes) {
            // a new sparse file reads zeros there already
        }

        @Override
        public void finish() throws RepositoryException {
            try {
                ch.force(true);
                ch.close();
                Files.move(partial, path, StandardCopyOption.ATOMIC_MOVE);
                Durable.fsyncDirectory(path.toAbsolutePath().getParent());
                finished = true;
            } catch (IOException e) {
                throw RepositoryException.io("cannot complete " + path, e);
            }
        }

        @Override
        public void close() {
            try {
                ch.close();
                if (!finished) {
                    Files.deleteIfExists(partial);
                }
            } catch (IOException e) {
                // a partial file left behind is named .partial
            }
        }
    }

    /** An existing block device; its size from sysfs (a block device's file size reads 0). */
    private static final class BlockDeviceTarget implements Target {
        private static final byte[] ZEROS = new byte[ZERO_PIECE_BYTES];
        private final Path path;
        private final FileChannel ch;

        BlockDeviceTarget(Path path) throws RepositoryException {
            this.path = path;
            try {
                ch = FileChannel.open(path, StandardOpenOption.WRITE);
            } catch (IOException e) {
                throw RepositoryException.io("cannot open " + path + " for writing", e);
            }
        }

        @Override
        public long sizeBytes() throws RepositoryException {
            try {
                long rdev = (Long) Files.getAttribute(path, "unix:rdev");
                long major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~0xfffL);
                long minor = (rdev & 0xff) | ((rdev >> 12) & ~0xffL);
                Path sys = Path.of("/sys/dev/block/" + major + ":" + minor + "/size");
                return Long.parseLong(Files.readString(sys).trim()) * 512;
            } catch (IOException | RuntimeException e) {
                throw new RepositoryException(RepositoryException.Code.TARGET, target(path) + " is not a file, a block "
                        + "device whose size can be read, or an NBD URI: " + e.getMessage(), e);
            }
        }

        private static String target(Path p) {
            return p.toString();
        }

        @Override
        public void write(long offsetBytes, byte[] data) throws RepositoryException {
            writeFully(ch, path, offsetBytes, ByteBuffer.wrap(data));
        }

        @Override
        public void zero(long offsetBytes, long lengthBytes) throws RepositoryException {
            for (long done = 0; done < lengthBytes; done += ZERO_PIECE_BYTES) {
                int n = (int) Math.min(ZERO_PIECE_BYTES, lengthBytes - done);
                writeFully(ch, path, offsetBytes + done, ByteBuffer.wrap(ZEROS, 0, n));
            }
        }

        @Override
        public void finish() throws RepositoryException {
            try {
                ch.force(true);
            } catch (IOException e) {
                throw RepositoryException.io("cannot flush " + path, e);
            }
        }

        @Override
        public void close() {
            try {
                ch.close();
            } catch (IOException e) {
                // flushed in finish, or failed already
            }
        }
    }

    /** An NBD export. */
    private static final class NbdTarget implements Target {
        private static final byte[] ZEROS = new byte[ZERO_PIECE_BYTES];
        private final NbdClient client;

        NbdTarget(NbdClient client) throws RepositoryException {
            this.client = client;
            if (client.readOnly()) {
                client.close();
                throw new RepositoryException(RepositoryException.Code.TARGET, "the NBD export is read-only");
            }
        }

        @Override
        public long sizeBytes() {
            return client.sizeBytes();
        }

        @Override
        public void write(long offsetBytes, byte[] data) throws RepositoryException {
            for (int done = 0; done < data.length; done += NbdClientDescriptor.MAX_REQUEST_BYTES) {
                int n = Math.min(NbdClientDescriptor.MAX_REQUEST_BYTES, data.length - done);
                client.write(offsetBytes + done, ByteBuffer.wrap(data, done, n));
            }
        }

        @Override
        public void zero(long offsetBytes, long lengthBytes) throws RepositoryException {
            for (long done = 0; done < lengthBytes; done += ZERO_PIECE_BYTES) {
                int n = (int) Math.min(ZERO_PIECE_BYTES, lengthBytes - done);
                if (client.canWriteZeroes()) {
                    client.writeZeroes(offsetBytes + done, n);
                } else {
                    client.write(offsetBytes + done, ByteBuffer.wrap(ZEROS, 0, n));
                }
            }
        }

        @Override
        public void finish() throws RepositoryException {
            client.flush();
        }

        @Override
        public void close() {
            client.close();
        }
    }
}
