import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import org.blksnap.backup.Point;
import org.blksnap.backup.Repository;
import org.blksnap.backup.RepositoryLocation;
import org.blksnap.backup.Retention;
import org.blksnap.nbd.FileExportServer;

/**
 * A fleet at reduced scale (docs/repository.md, "Scale"): HOSTS simulated hosts, each a device of
 * SIZE with BLOCK-sized tracking blocks (half of it the same on every host, an "OS image"; half its
 * own), back up into one repository REPO every simulated day, PARALLEL at a time, after changing
 * CHANGE of their blocks at random; after each day prune keeps the last KEEP points per host and gc
 * runs. It prints, per day, what one host's backup cost on average (requests by kind, bytes up and
 * down, seconds) and what gc cost, and the objects in the repository; the per-chunk and per-point
 * figures extrapolate to a real fleet. Run by bench/fleet-sim.sh, which starts s3proxy:
 *
 * <pre>java -cp "target/classes:target/test-classes:target/lib/*" bench/FleetSim.java REPO WORKDIR HOSTS SIZE_MIB BLOCK_KIB DAYS CHANGE_PERCENT KEEP PARALLEL [ENDPOINT]</pre>
 */
public class FleetSim {
    public static void main(String[] a) throws Exception {
        String repoArg = a[0];
        Path work = Files.createDirectories(Path.of(a[1]));
        int hosts = Integer.parseInt(a[2]);
        long size = Long.parseLong(a[3]) << 20;
        int block = Integer.parseInt(a[4]) << 10;
        int days = Integer.parseInt(a[5]);
        double change = Double.parseDouble(a[6]) / 100;
        int keep = Integer.parseInt(a[7]);
        int parallel = Integer.parseInt(a[8]);
        String endpoint = a.length > 9 ? a[9] : null;
        RepositoryLocation where = Repository.locate(repoArg, endpoint);
        int blocks = (int) (size / block);
        String[] names = new String[hosts];
        for (int h = 0; h < hosts; h++) {
            names[h] = "host" + h;
        }
        // content: the first half the same everywhere, the second half each host's own (random: no compression)
        byte[] golden = new byte[(int) (size / 2)];
        new Random(42).nextBytes(golden);
        for (int h = 0; h < hosts; h++) {
            try (RandomAccessFile f = new RandomAccessFile(work.resolve(names[h] + ".img").toFile(), "rw")) {
                f.setLength(size);
                f.write(golden);
                byte[] own = new byte[(int) (size / 2)];
                new Random(1000 + h).nextBytes(own);
                f.write(own);
            }
        }
        System.out.printf(Locale.ROOT, "fleet: %d hosts x %d MiB, %d KiB blocks (%d per host), %.1f %% changed a day, keep %d, %d at a time, %s%n",
                hosts, size >> 20, block >> 10, blocks, change * 100, keep, parallel, where);
        System.out.println("| day | backup s/host | PUT | MULTIPART | GET | LIST | HEAD | DELETE | MiB up | MiB down | new chunks/host | gc s | gc requests | packs | index objects | index MiB | points |");
        System.out.println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        byte[][] maps = new byte[hosts][blocks];
        try (FileExportServer nbd = new FileExportServer(work, size, names);
             ExecutorService pool = Executors.newFixedThreadPool(parallel)) {
            for (int day = 1; day <= days; day++) {
                int snap = day;
                if (day > 1) {
                    for (int h = 0; h < hosts; h++) {
                        Random r = new Random(day * 100_003L + h);
                        try (RandomAccessFile f = new RandomAccessFile(work.resolve(names[h] + ".img").toFile(), "rw")) {
                            byte[] data = new byte[block];
                            for (int k = 0; k < (int) Math.round(blocks * change); k++) {
                                int b = r.nextInt(blocks);
                                r.nextBytes(data);
                                f.seek((long) b * block);
                                f.write(data);
                                maps[h][b] = (byte) snap;
                            }
                        }
                    }
                }
                Map<String, AtomicLong> totals = new ConcurrentHashMap<>();
                AtomicLong newChunks = new AtomicLong();
                long t0 = System.nanoTime();
                List<Future<?>> fs = new ArrayList<>();
                for (int h = 0; h < hosts; h++) {
                    int host = h;
                    fs.add(pool.submit(() -> {
                        Repository repo = Repository.openForWriting(where, names[host], 32L << 20, m -> { });
                        try {
                            byte[] map = maps[host].clone();
                            Point p = repo.backup(new Repository.BackupSource("disk0", nbd.uri(names[host]), size, block,
                                    "gen-" + host, snap), () -> map, Repository.Progress.NONE);
                            newChunks.addAndGet(p.bytesRead() / block);
                        } finally {
                            repo.close();
                        }
                        repo.requestCounts().forEach((k, v) -> totals.computeIfAbsent(k, x -> new AtomicLong()).addAndGet(v));
                        return null;
                    }));
                }
                for (Future<?> f : fs) {
                    f.get();
                }
                double backupSeconds = (System.nanoTime() - t0) / 1e9 * parallel / hosts;
                long g0 = System.nanoTime();
                Map<String, Long> gcCounts;
                try (Repository m = Repository.openForMaintenance(where, x -> { })) {
                    m.prune(new Retention(keep, 0, 0, 0), false);
                    m.gc(Duration.ZERO, false);
                    gcCounts = new TreeMap<>(m.requestCounts());
                }
                double gcSeconds = (System.nanoTime() - g0) / 1e9;
                long packs = 0;
                long indexObjects = 0;
                long indexBytes = 0;
                int points;
                try (Repository r = Repository.openForReading(where)) {
                    points = r.points().size();
                    Map<String, long[]> objects = r.objectCounts();
                    packs = objects.getOrDefault("packs", new long[2])[0];
                    indexObjects = objects.getOrDefault("index", new long[2])[0];
                    indexBytes = objects.getOrDefault("index", new long[2])[1];
                }
                long gcRequests = gcCounts.entrySet().stream().filter(e -> !e.getKey().endsWith("_BYTES"))
                        .mapToLong(Map.Entry::getValue).sum();
                System.out.printf(Locale.ROOT, "| %d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %.0f | %.1f | %d | %d | %d | %.2f | %d |%n",
                        day, backupSeconds, per(totals, "PUT", hosts), per(totals, "MULTIPART", hosts), per(totals, "GET", hosts),
                        per(totals, "LIST", hosts), per(totals, "HEAD", hosts), per(totals, "DELETE", hosts),
                        per(totals, "PUT_BYTES", hosts) / (1 << 20), per(totals, "GET_BYTES", hosts) / (1 << 20),
                        newChunks.get() / (double) hosts, gcSeconds, gcRequests, packs, indexObjects, indexBytes / (double) (1 << 20),
                        points);
            }
        }
    }

    private static double per(Map<String, AtomicLong> totals, String key, int hosts) {
        AtomicLong v = totals.get(key);
        return v == null ? 0 : v.get() / (double) hosts;
    }
}
