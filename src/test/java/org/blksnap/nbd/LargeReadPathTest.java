package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.blksnap.nbd.NbdServer.LargeReads;
import org.blksnap.testing.Concurrently;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

class LargeReadPathTest {
    private static final boolean BUFFER = true;
    private static final boolean SENDFILE = false;

    @Test
    void aLoneLocalReaderIsAnsweredThroughABufferWhateverItsDepth() {
        LargeReadPath path = new LargeReadPath(LargeReads.AUTO, 2);
        LargeReadPath.Reader fio = path.reader(true);
        for (int depth = 0; depth < 8; depth++) {
            assertThat(fio.begin()).as("request %d in flight", depth + 1).isEqualTo(BUFFER);
        }
        assertThat(path.readers()).as("one connection, however many requests").isEqualTo(1);
        for (int depth = 0; depth < 8; depth++) {
            fio.end();
        }
        assertThat(path.readers()).isZero();
    }

    @Test
    void beyondHalfTheCpusOfReadingConnectionsTheKernelSendsTheFile() {
        LargeReadPath twoCpus = new LargeReadPath(LargeReads.AUTO, 2);
        LargeReadPath.Reader first = twoCpus.reader(true);
        LargeReadPath.Reader second = twoCpus.reader(true);
        assertThat(first.begin()).isEqualTo(BUFFER);
        assertThat(second.begin()).as("two readers on two CPUs").isEqualTo(SENDFILE);
        assertThat(first.begin()).as("the first one's next read too").isEqualTo(SENDFILE);
        second.end();
        assertThat(first.begin()).as("alone again").isEqualTo(BUFFER);
        first.end();
        first.end();
        first.end();
        assertThat(twoCpus.readers()).isZero();

        LargeReadPath eightCpus = new LargeReadPath(LargeReads.AUTO, 8);
        List<LargeReadPath.Reader> readers = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            readers.add(eightCpus.reader(true));
        }
        for (int i = 0; i < 4; i++) {
            assertThat(readers.get(i).begin()).as("reader %d of 4 allowed on 8 CPUs", i + 1).isEqualTo(BUFFER);
        }
        assertThat(readers.get(4).begin()).as("the fifth").isEqualTo(SENDFILE);

        LargeReadPath oneCpu = new LargeReadPath(LargeReads.AUTO, 1);
        assertThat(oneCpu.reader(true).begin()).as("at least one reader copies").isEqualTo(BUFFER);
    }

    @Test
    void aRemoteClientAlwaysGetsSendfileAndPinnedModesIgnoreTheCount() {
        LargeReadPath auto = new LargeReadPath(LargeReads.AUTO, 64);
        assertThat(auto.reader(false).begin()).as("remote: its copy is from the network card anyway")
                .isEqualTo(SENDFILE);

        LargeReadPath copy = new LargeReadPath(LargeReads.COPY, 2);
        LargeReadPath sendfile = new LargeReadPath(LargeReads.SENDFILE, 64);
        for (int i = 0; i < 4; i++) {
            assertThat(copy.reader(i % 2 == 0).begin()).isEqualTo(BUFFER);
            assertThat(sendfile.reader(true).begin()).isEqualTo(SENDFILE);
        }
        assertThat(copy.readers()).as("counted all the same").isEqualTo(4);
        assertThat(copy.throughBuffer()).as("reads counted by path").isEqualTo(4);
        assertThat(copy.bySendfile()).isZero();
        assertThat(sendfile.bySendfile()).isEqualTo(4);
        assertThat(sendfile.throughBuffer()).isZero();
        assertThat(auto.bySendfile()).isEqualTo(1);
    }

    /**
     * Forbidden outcome: a count of reading connections that does not return to zero once every
     * read of every connection has ended, or one below zero or above what the threads can account
     * for (each connection's requests begin and end on many threads); a read not counted on
     * exactly one path.
     */
    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void concurrentReadsOfManyConnectionsLeaveNoReaderCounted() throws Exception {
        LargeReadPath path = new LargeReadPath(LargeReads.AUTO, 4);
        int connections = 6;
        int threadsPerConnection = 4;
        List<LargeReadPath.Reader> readers = new ArrayList<>();
        for (int c = 0; c < connections; c++) {
            readers.add(path.reader(c % 3 != 0));
        }
        Concurrently.onPlatformThreads(connections * threadsPerConnection, t -> {
            LargeReadPath.Reader reader = readers.get(t / threadsPerConnection);
            SplittableRandom r = new SplittableRandom(t);
            for (int i = 0; i < 20_000; i++) {
                reader.begin();
                int now = path.readers();
                // The count may lag either way by the threads between their two steps (one
                // uncounting a connection that another counts again, or counting it late).
                if (now < 0 || now > connections * threadsPerConnection) {
                    throw new AssertionError(now + " reading connections");
                }
                if (r.nextInt(8) == 0) {
                    Thread.yield();
                }
                reader.end();
            }
        });
        assertThat(path.readers()).isZero();
        assertThat(path.bySendfile() + path.throughBuffer()).as("every read counted once, on one path")
                .isEqualTo((long) connections * threadsPerConnection * 20_000);
        assertThat(path.bySendfile()).as("the remote connections' reads at least").isPositive();
    }
}
