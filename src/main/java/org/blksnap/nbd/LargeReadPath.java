package org.blksnap.nbd;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;

/**
 * Chooses how the data of a large READ (from {@link RequestHandler#SEND_FILE_MIN_BYTES}) of a device
 * that hands file ranges ({@link org.blksnap.engine.BlockDevice#sender()}) leaves the server: by
 * sendfile (the kernel sends the file's pages, no copy in this process) or through a buffer (pread,
 * then write: two copies here).
 *
 * <p>Why not always sendfile: a client on this host (Unix socket, loopback TCP) is then handed the
 * page-cache pages themselves and copies them out of memory on its own CPU while ours idles; through
 * a buffer the server makes that copy out of memory on another CPU and the client copies bytes that
 * are still in the CPU cache, the two working at once. With more readers than the CPUs can overlap,
 * the extra copies cost more than they overlap. Measured on 2 vCPUs (2026-12-04, a 2 GiB file on
 * /dev/shm and on ext4, MiB/s): fio read 1 MiB QD8 on one connection 1,500-1,822 by sendfile,
 * 2,666-3,167 through a buffer; nbdcopy (two connections busy, 256 KiB READs) 2,231-3,695 by
 * sendfile, 1,846-2,473 through a buffer. A remote client copies from its network card whichever
 * way, so sendfile only saves our CPU.
 *
 * <p>{@link NbdServer.LargeReads#AUTO}: through a buffer when the client is on this host and at
 * most {@code max(1, CPUs / 2)} connections are in the middle of large reads (each such reader
 * keeps about two CPUs busy, its client's and ours); by sendfile otherwise. The other modes pin one
 * path (tests, and hosts where one is known to be better).
 *
 * <p>Counts the reads each path took ({@link #bySendfile()}, {@link #throughBuffer()}), so that an
 * operator can see what AUTO chose before pinning a path.
 *
 * <p>Thread-safe: counters only. The count of reading connections may lag by the request being
 * started on another thread; the choice is a heuristic for speed, never for correctness (both paths
 * send the same bytes).
 */
final class LargeReadPath {
    private final NbdServer.LargeReads mode;
    /** AUTO copies while at most this many connections read large. */
    private final int copyMaxReaders;
    /** Connections with at least one large read in flight. */
    private final AtomicInteger readers = new AtomicInteger();
    private final LongAdder sent = new LongAdder();
    private final LongAdder copied = new LongAdder();

    /** @param cpus the processors this process may use ({@link Runtime#availableProcessors()}) */
    LargeReadPath(NbdServer.LargeReads mode, int cpus) {
        this.mode = mode;
        this.copyMaxReaders = Math.max(1, cpus / 2);
    }

    /** Connections in the middle of large reads now. */
    int readers() {
        return readers.get();
    }

    /** Large reads sent by sendfile so far (begun; a read that then failed counts too). */
    long bySendfile() {
        return sent.sum();
    }

    /** Large reads sent through a buffer so far (begun; a read that then failed counts too). */
    long throughBuffer() {
        return copied.sum();
    }

    /** The side of one connection; {@code clientOnThisHost} as {@link NbdChannel#clientOnThisHost()}. */
    Reader reader(boolean clientOnThisHost) {
        return new Reader(clientOnThisHost);
    }

    /** Counts one connection's large reads in flight. Thread-safe (its request threads call it). */
    final class Reader {
        private final boolean local;
        private final AtomicInteger inFlight = new AtomicInteger();

        private Reader(boolean local) {
            this.local = local;
        }

        /**
         * Starts a large read and says how to send it: true through a buffer, false by sendfile.
         * Each call must be followed by one {@link #end()}.
         */
        boolean begin() {
            int reading = inFlight.getAndIncrement() == 0 ? readers.incrementAndGet() : readers.get();
            boolean buffer = switch (mode) {
                case COPY -> true;
                case SENDFILE -> false;
                case AUTO -> local && reading <= copyMaxReaders;
            };
            (buffer ? copied : sent).increment();
            return buffer;
        }

        /** Ends a large read started by {@link #begin()}. */
        void end() {
            if (inFlight.decrementAndGet() == 0) {
                readers.decrementAndGet();
            }
        }
    }
}
