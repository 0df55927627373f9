package org.blksnap.testing;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.zip.CRC32;

/**
 * Port of upstream's {@code TestSector} ({@code tests/cpp/TestSector.{h,cpp}}): every 512-byte
 * sector carries a header that says what was written there, when, and where it belongs, so that a
 * checker can tell a sector from the wrong place, a torn or garbage sector, and data written after
 * the snapshot.
 *
 * <pre>
 *   0       8     12     16       24       32                     512
 *   +-------+-----+------+--------+--------+----------------------+
 *   |head[8]| crc | seq  | sector |seqTime |  random body         |
 *   +-------+-----+------+--------+--------+----------------------+
 *   head = "testhead"; crc = CRC32 of bytes [12, 512); all fields little-endian (x86 layout)
 * </pre>
 *
 * Upstream's {@code seqTime} is {@code clock()}; here it is {@link System#nanoTime()} when the
 * generator moved to that sequence number, so it grows with {@code seq}.
 */
public final class TestSector {
    public static final int SECTOR_BYTES = 512;
    public static final int HEAD_OFFSET = 0;
    public static final int CRC_OFFSET = 8;
    public static final int SEQ_OFFSET = 12;
    public static final int LBA_OFFSET = 16;
    public static final int TIME_OFFSET = 24;
    public static final int BODY_OFFSET = 32;
    private static final byte[] HEAD = "testhead".getBytes(StandardCharsets.US_ASCII);

    /** What a checker can find wrong with a sector. */
    public enum Fault {
        /** Header or CRC does not match: not a test sector, or torn. */
        CORRUPTED,
        /** A valid test sector, but written for another LBA: data from a wrong place. */
        INCORRECT_SECTOR,
        /** Newer than expected (or, strictly, not exactly the expected write). */
        UNEXPECTED_SEQ
    }

    private TestSector() {
    }

    /** The generator: a sequence number, the time it was started, and the random body source. */
    public static final class Generator {
        private final SplittableRandom random;
        private int seq;
        private long time;
        private final java.util.Map<Integer, Long> timeOfSeq = new java.util.HashMap<>();

        private final boolean keepTimes;

        /** A generator that remembers the time of every seq ({@link #timeOf}). */
        public Generator(long seed) {
            this(seed, true);
        }

        /**
         * @param keepTimes whether to remember the time of every seq for {@link #timeOf}; a
         *                  long-running writer that checks by seq alone passes false, so that its
         *                  memory does not grow with every write
         */
        public Generator(long seed, boolean keepTimes) {
            this.random = new SplittableRandom(seed);
            this.keepTimes = keepTimes;
            this.time = System.nanoTime();
            if (keepTimes) {
                timeOfSeq.put(0, time);
            }
        }

        public int seq() {
            return seq;
        }

        public long time() {
            return time;
        }

        public long timeOf(int s) {
            return timeOfSeq.get(s);
        }

        /** Moves to the next sequence number (upstream: {@code IncSequence}). */
        public int nextSeq() {
            seq++;
            time = System.nanoTime();
            if (keepTimes) {
                timeOfSeq.put(seq, time);
            }
            return seq;
        }

        public SplittableRandom random() {
            return random;
        }

        /** A buffer of {@code sectors} test sectors for LBAs from {@code firstSector}, at the current seq. */
        public ByteBuffer sectors(long firstSector, int sectors) {
            ByteBuffer buf = ByteBuffer.allocate(sectors * SECTOR_BYTES).order(ByteOrder.LITTLE_ENDIAN);
            byte[] body = new byte[SECTOR_BYTES - BODY_OFFSET];
            CRC32 crc = new CRC32();
            for (int i = 0; i < sectors; i++) {
                int base = i * SECTOR_BYTES;
                buf.put(base + HEAD_OFFSET, HEAD);
                buf.putInt(base + SEQ_OFFSET, seq);
                buf.putLong(base + LBA_OFFSET, firstSector + i);
                buf.putLong(base + TIME_OFFSET, time);
                random.nextBytes(body);
                buf.put(base + BODY_OFFSET, body);
                crc.reset();
                crc.update(buf.array(), base + SEQ_OFFSET, SECTOR_BYTES - SEQ_OFFSET);
                buf.putInt(base + CRC_OFFSET, (int) crc.getValue());
            }
            return buf;
        }
    }

    /**
     * Checks one sector (upstream {@code Check}): the CRC, its LBA, and its seq/time against the
     * expected ones, {@code >} when not strict, {@code !=} when strict.
     *
     * @return null if the sector is fine
     */
    public static Fault check(ByteBuffer buf, int offset, long expectedSector, int expectedSeq, long expectedTime,
                       boolean strict) {
        ByteBuffer b = buf.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < HEAD.length; i++) {
            if (b.get(offset + HEAD_OFFSET + i) != HEAD[i]) {
                return Fault.CORRUPTED;
            }
        }
        CRC32 crc = new CRC32();
        crc.update(b.duplicate().position(offset + SEQ_OFFSET).limit(offset + SECTOR_BYTES));
        if (b.getInt(offset + CRC_OFFSET) != (int) crc.getValue()) {
            return Fault.CORRUPTED;
        }
        if (b.getLong(offset + LBA_OFFSET) != expectedSector) {
            return Fault.INCORRECT_SECTOR;
        }
        int seq = b.getInt(offset + SEQ_OFFSET);
        long time = b.getLong(offset + TIME_OFFSET);
        boolean bad = strict ? seq != expectedSeq || time != expectedTime : seq > expectedSeq || time > expectedTime;
        return bad ? Fault.UNEXPECTED_SEQ : null;
    }

    /** The seq stored in a sector (no checks). */
    public static int seqOf(ByteBuffer buf, int offset) {
        return buf.duplicate().order(ByteOrder.LITTLE_ENDIAN).getInt(offset + SEQ_OFFSET);
    }

    /**
     * Collects failing sectors as merged ranges of one fault each, like upstream's checker, which
     * logs the first 30.
     */
    public static final class Failures {
        private static final int SHOWN = 30;
        private final String what;
        private final List<String> ranges = new ArrayList<>();
        private long runStart = -1;
        private long runEnd = -1;
        private Fault runFault;
        private int runSeq;
        private long total;

        public Failures(String what) {
            this.what = what;
        }

        public void add(long sector, Fault fault, int foundSeq) {
            total++;
            if (runFault == fault && sector == runEnd) {
                runEnd++;
                return;
            }
            flush();
            runStart = sector;
            runEnd = sector + 1;
            runFault = fault;
            runSeq = foundSeq;
        }

        private void flush() {
            if (runStart >= 0) {
                ranges.add(runFault + " sectors " + runStart + ".." + (runEnd - 1) + " (first has seq " + runSeq + ")");
                runStart = -1;
            }
        }

        public long total() {
            return total;
        }

        /** Empty when nothing failed; otherwise the first 30 ranges and a total. */
        public List<String> report() {
            flush();
            if (ranges.isEmpty()) {
                return List.of();
            }
            List<String> out = new ArrayList<>(ranges.subList(0, Math.min(SHOWN, ranges.size())));
            out.add(0, what + ": " + total + " bad sectors in " + ranges.size() + " ranges");
            return out;
        }
    }
}
