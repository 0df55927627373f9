package org.blksnap.engine.scenario;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import org.blksnap.engine.BlockDevice;
import org.blksnap.testing.TestSector;

/**
 * A device (original or image) with the seq of every 512-byte sector as a test expects it. Writes
 * put test sectors of a new seq and record it; checks are strict: a sector of a wrong write, a
 * wrong place or a wrong side fails. Not thread-safe (one test thread).
 */
final class SectorModel {
    private static final int SECTOR = TestSector.SECTOR_BYTES;

    final String name;
    final BlockDevice dev;
    final int[] seq;
    private final TestSector.Generator gen;

    SectorModel(String name, BlockDevice dev, int[] seq, TestSector.Generator gen) {
        this.name = name;
        this.dev = dev;
        this.seq = seq;
        this.gen = gen;
    }

    /** The same expectations (a copy) for another device, e.g. the image of this original at take. */
    SectorModel copyFor(String otherName, BlockDevice other) {
        return new SectorModel(otherName, other, seq.clone(), gen);
    }

    /** Writes {@code lengthBytes} of test sectors of a new seq at {@code offsetBytes}. */
    void write(long offsetBytes, long lengthBytes) throws Exception {
        int s = gen.nextSeq();
        int sectors = (int) (lengthBytes / SECTOR);
        int first = (int) (offsetBytes / SECTOR);
        dev.write(gen.sectors(first, sectors), offsetBytes);
        for (int i = 0; i < sectors; i++) {
            seq[first + i] = s;
        }
    }

    /** Asserts that every sector in the range holds what the model expects. */
    void check(String what, long offsetBytes, long lengthBytes) throws Exception {
        if (lengthBytes <= 0) {
            return;
        }
        ByteBuffer b = Io.readBuffer(dev, offsetBytes, (int) lengthBytes);
        TestSector.Failures f = new TestSector.Failures(name + ": " + what + " at " + offsetBytes + "+" + lengthBytes);
        for (int i = 0; i < lengthBytes / SECTOR; i++) {
            int lba = (int) (offsetBytes / SECTOR) + i;
            TestSector.Fault fault = TestSector.check(b, i * SECTOR, lba, seq[lba], gen.timeOf(seq[lba]), true);
            if (fault != null) {
                f.add(lba, fault, TestSector.seqOf(b, i * SECTOR));
            }
        }
        assertThat(f.report()).as(what).isEmpty();
    }
}
