import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import org.blksnap.engine.Blksnap;
import org.blksnap.engine.Params;
import org.blksnap.engine.Persistence;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;

/**
 * How long a start takes to bring back the saved tracker of a 10 TiB device (a sparse file): the
 * engine is initialised and the device added five times after a clean stop. Run from the project
 * root after a build: {@code java --enable-native-access=ALL-UNNAMED -cp "target/classes:target/lib/*"
 * bench/StateLoad.java /tmp/state-load} (the directory is created; remove it afterwards).
 */
public class StateLoad {
    public static void main(String[] a) throws Exception {
        Path dir = Path.of(a[0]);
        Files.createDirectories(dir);
        Path img = dir.resolve("big.img");
        long size = 10L << 40;
        Persistence p = new Persistence(dir.resolve("state"), Persistence.DEFAULT_REGION_BYTES, Duration.ofHours(1));
        Blksnap e = BlksnapModule.init(new Params(), p);
        e.addDevice("big", BlockDevices.open(img, size, false));
        UUID id = e.snapshotCreate(List.of("big"));
        e.snapshotDestroy(id);
        ByteBuffer b = ByteBuffer.allocate(4096);
        for (long off = 0; off < size; off += size / 4096) {
            e.device("big").write(b.clear(), off);
        }
        e.close();
        for (int i = 0; i < 5; i++) {
            long t0 = System.nanoTime();
            Blksnap e2 = BlksnapModule.init(new Params(), p);
            e2.addDevice("big", BlockDevices.open(img, size, false));
            long t1 = System.nanoTime();
            System.out.printf("start with a 10 TiB tracked device (clean state, %s): %.1f ms%n",
                    e2.cbtInfo("big").generationReason(), (t1 - t0) / 1e6);
            e2.close();
        }
        Files.size(dir.resolve("state/trackers/big/checkpoint"));
        System.out.println("checkpoint bytes: " + Files.size(dir.resolve("state/trackers/big/checkpoint")));
    }
}
