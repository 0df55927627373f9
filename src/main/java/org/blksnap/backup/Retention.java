package org.blksnap.backup;

import java.time.Instant;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.temporal.IsoFields;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Function;

/**
 * Which points a retention policy keeps, per device of each host, as restic's {@code forget} counts: the newest
 * {@code last} points; then, newest first, one point per UTC day for the newest {@code daily} days
 * that have a point, and likewise per ISO week and per month. A point is kept when any rule keeps it.
 * A pure function of the points; thread-safe.
 *
 * @param last    newest points kept, >= 0
 * @param daily   days kept (the newest point of each), >= 0
 * @param weekly  ISO weeks kept, >= 0
 * @param monthly months kept, >= 0
 */
public record Retention(int last, int daily, int weekly, int monthly) {
    public Retention {
        for (int v : new int[] {last, daily, weekly, monthly}) {
            if (v < 0) {
                throw new IllegalArgumentException("keep counts (" + last + ", " + daily + ", " + weekly + ", " + monthly
                        + ") must be >= 0");
            }
        }
        if (last + daily + weekly + monthly == 0) {
            throw new IllegalArgumentException("a policy must keep something: give --keep-last, --keep-daily, "
                    + "--keep-weekly or --keep-monthly a count above 0");
        }
    }

    /** A point and why it is kept (empty when it goes). */
    public record Decision(Point point, List<String> reasons) {
        public boolean keep() {
            return !reasons.isEmpty();
        }
    }

    /** The decision for every point, grouped by device, newest first within a device. */
    public List<Decision> apply(List<Point> points) {
        Map<String, List<Point>> byDevice = new LinkedHashMap<>();
        for (Point p : points) {
            byDevice.computeIfAbsent(p.host() + "\u0000" + p.device(), d -> new ArrayList<>()).add(p);
        }
        List<Decision> out = new ArrayList<>();
        for (List<Point> ps : byDevice.values()) {
            ps.sort(Comparator.comparing(Point::time).thenComparing(Point::id).reversed());
            Map<Point, List<String>> reasons = new LinkedHashMap<>();
            ps.forEach(p -> reasons.put(p, new ArrayList<>()));
            for (int i = 0; i < Math.min(last, ps.size()); i++) {
                reasons.get(ps.get(i)).add("last " + (i + 1));
            }
            bucket(ps, reasons, daily, "daily", t -> t.toLocalDate().toString());
            bucket(ps, reasons, weekly, "weekly", t -> t.get(IsoFields.WEEK_BASED_YEAR) + "-W"
                    + t.get(IsoFields.WEEK_OF_WEEK_BASED_YEAR));
            bucket(ps, reasons, monthly, "monthly", t -> t.getYear() + "-" + t.getMonthValue());
            reasons.forEach((p, r) -> out.add(new Decision(p, List.copyOf(r))));
        }
        return out;
    }

    private static void bucket(List<Point> newestFirst, Map<Point, List<String>> reasons, int count, String rule,
                               Function<ZonedDateTime, String> key) {
        String lastKey = null;
        int kept = 0;
        for (Point p : newestFirst) {
            if (kept >= count) {
                return;
            }
            String k = key.apply(Instant.parse(p.time()).atZone(ZoneOffset.UTC));
            if (!Objects.equals(k, lastKey)) {
                reasons.get(p).add(rule + " " + k);
                lastKey = k;
                kept++;
            }
        }
    }
}
