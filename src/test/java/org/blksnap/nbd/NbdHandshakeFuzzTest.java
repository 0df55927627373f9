package org.blksnap.nbd;

import com.code_intelligence.jazzer.junit.FuzzTest;

/**
 * Fuzz target: the NBD handshake and options. The input is the raw byte stream a client sends after
 * the server's greeting (client flags, then options; a successful GO or EXPORT_NAME goes on into
 * transmission with the rest). See {@link NbdFuzzHarness} for what is checked after each input.
 *
 * <p>In a normal test run {@code @FuzzTest} replays the seeds and findings under
 * {@code src/test/resources/org/blksnap/nbd/NbdHandshakeFuzzTestInputs/handshake/}; {@code bin/fuzz}
 * fuzzes (docs/RELIABILITY.md).
 */
public class NbdHandshakeFuzzTest {
    @FuzzTest
    void handshake(byte[] clientStream) {
        fuzzerTestOneInput(clientStream);
    }

    /** The entry point of Jazzer's standalone driver. */
    public static void fuzzerTestOneInput(byte[] clientStream) {
        NbdFuzzHarness.get().run(clientStream);
    }
}
