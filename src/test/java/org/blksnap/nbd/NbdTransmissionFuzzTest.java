package org.blksnap.nbd;

import static org.blksnap.nbd.NbdHandshakeDescriptor.*;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Fuzz target: the transmission phase. The first input byte picks the handshake the harness does
 * on the client's behalf (bit 0: structured replies; bit 1: the read-only export with a dirty
 * bitmap instead of the writable one; bit 2: select metadata contexts; bit 3: EXPORT_NAME instead of
 * GO); the rest is the raw request stream (headers, WRITE payloads, anything). See
 * {@link NbdFuzzHarness} for what is checked after each input.
 *
 * <p>In a normal test run {@code @FuzzTest} replays the seeds and findings under
 * {@code src/test/resources/org/blksnap/nbd/NbdTransmissionFuzzTestInputs/transmission/}.
 */
public class NbdTransmissionFuzzTest {
    @FuzzTest
    void transmission(byte[] input) {
        fuzzerTestOneInput(input);
    }

    /** The entry point of Jazzer's standalone driver. */
    public static void fuzzerTestOneInput(byte[] input) {
        int variant = input.length == 0 ? 0 : input[0];
        byte[] requests = input.length == 0 ? input : Arrays.copyOfRange(input, 1, input.length);
        NbdFuzzHarness.get().run(concat(handshake(variant), requests));
    }

    /** The client's side of a successful handshake of the given variant. */
    static byte[] handshake(int variant) {
        boolean structured = (variant & 1) != 0;
        String export = (variant & 2) != 0 ? "ro" : "disk";
        boolean contexts = (variant & 4) != 0;
        boolean exportName = (variant & 8) != 0;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(ByteBuffer.allocate(4).putInt(CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES).array());
        if (structured) {
            out.writeBytes(option(OPT_STRUCTURED_REPLY, new byte[0]));
            if (contexts) {
                out.writeBytes(option(OPT_SET_META_CONTEXT,
                        NbdTestClient.metaRequest(export, "base:allocation", "qemu:dirty-bitmap:b0")));
            }
        }
        if (exportName) {
            out.writeBytes(option(OPT_EXPORT_NAME, export.getBytes(StandardCharsets.UTF_8)));
        } else {
            out.writeBytes(option(OPT_GO, NbdTestClient.infoRequest(export)));
        }
        return out.toByteArray();
    }

    static byte[] option(int option, byte[] data) {
        return ByteBuffer.allocate(16 + data.length).putLong(IHAVEOPT).putInt(option).putInt(data.length).put(data)
                .array();
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] r = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }
}
