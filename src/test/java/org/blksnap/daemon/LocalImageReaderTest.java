package org.blksnap.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.blksnap.backup.ImageReader;
import org.blksnap.backup.RepositoryException;
import org.blksnap.ctrl.FakeBlksnap;
import org.junit.jupiter.api.Test;

/**
 * The agent's opener reads a device's CBT map from the engine in one call, the bytes the control
 * API's pieces would give, and names the device and the engine's error when it cannot; the NBD
 * opener of a separate process reads none (the tool then asks the control API).
 */
class LocalImageReaderTest {
    @Test
    void theAgentsOpenerReadsTheWholeCbtMapFromTheEngineInOneCall() throws Exception {
        FakeBlksnap engine = new FakeBlksnap();
        engine.mapBlocks = 70_000;
        byte[] map = LocalImageReader.opener(engine).cbtMap("disk0", 70_000);
        assertThat(map).hasSize(70_000);
        byte[] expected = engine.trackerReadCbtMap("disk0", 0, 70_000);
        assertThat(map).isEqualTo(expected);
        assertThat(engine.calls).filteredOn(c -> c.startsWith("readCbtMap")).hasSize(2)
                .first().isEqualTo("readCbtMap disk0 0 70000");
        assertThat(ImageReader.Opener.NBD.cbtMap("disk0", 70_000)).isNull();
    }

    @Test
    void aMapThatCannotBeReadIsAnErrorNamingTheDevice() {
        FakeBlksnap engine = new FakeBlksnap();
        assertThatThrownBy(() -> LocalImageReader.opener(engine).cbtMap("nope", 16))
                .isInstanceOfSatisfying(RepositoryException.class, e -> {
                    assertThat(e.code()).isEqualTo(RepositoryException.Code.NBD);
                    assertThat(e.getMessage()).contains("CBT map of nope", "ENXIO");
                });
    }
}
