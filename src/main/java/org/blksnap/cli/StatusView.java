package org.blksnap.cli;

import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.blksnap.ctrl.api.Replies;

/**
 * The text form of {@code blksnap status}, made to be read at a glance: a summary line, the devices
 * with their trackers (generation, last snapshot number, why the generation started) and the
 * snapshot holding them, the snapshots with their age, their lease (when created with one: how
 * long until the daemon destroys it unless renewed), a bar of difference storage use and their
 * images, the resident backup agent's jobs (when there are any), and, with {@code --repo}, the
 * newest backup point of each device. Width-aware (the bar
 * fills what is left of {@code columns}); ANSI colour only when asked for (a terminal). Stateless.
 *
 * <pre>
 * blksnapd 1.0.0.0: 2 devices, 1 snapshot
 * devices:
 *   disk0  1.0 GiB  generation 6f1c2a3b snapshot #4 reason=NEW_TRACKER  in 0c7e5a2e  nbd://127.0.0.1:10809/disk0
 *   vm1    4.0 GiB  untracked
 * snapshots:
 *   0c7e5a2e-3f41-4d0b-9a38-7e4a8b2f5c11 taken 5m12s ago  disk0  lease 1m00s, 47s left
 *     storage [#########-----------------------------]  24%  61.0 MiB of 256 MiB, 976 chunks copied
 *     disk0 blksnap-image0 nbd://127.0.0.1:10809/blksnap-image0
 * </pre>
 */
final class StatusView {
    /** The bar's width bounds, in characters. */
    static final int MIN_BAR = 10;
    static final int MAX_BAR = 50;
    private static final String GREEN = "\u001b[32m";
    private static final String YELLOW = "\u001b[33m";
    private static final String RED = "\u001b[31m";
    private static final String BOLD = "\u001b[1m";
    private static final String RESET = "\u001b[0m";
    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss 'UTC'")
            .withZone(ZoneOffset.UTC);

    /**
     * The newest point of one device in a repository ({@code status --repo}).
     *
     * @param time the point's time as the repository writes it (ISO-8601, UTC)
     */
    record LastBackup(String device, String id, String time, String kind, String generation, long snapNumber) {
    }

    /**
     * @param repo        the repository read, or null when no {@code --repo} was given
     * @param lastBackups newest point per device name (devices without one are absent)
     * @param nowMillis   the current time, for ages
     * @param columns     the width to fit the bar in (the terminal's, or 80)
     * @param color       whether to use ANSI colours
     */
    record Options(String repo, Map<String, LastBackup> lastBackups, long nowMillis, int columns, boolean color) {
    }

    private final Options o;

    private StatusView(Options o) {
        this.o = o;
    }

    /** The whole text, lines joined with newlines. */
    static String render(Replies.Status s, Options options) {
        return new StatusView(options).render(s);
    }

    private String render(Replies.Status s) {
        List<String> out = new ArrayList<>();
        out.add(bold("blksnapd " + s.version()) + ": " + count(s.devices().size(), "device") + ", "
                + count(s.snapshots().size(), "snapshot"));
        out.add("devices:");
        int nameWidth = s.devices().stream().mapToInt(d -> d.name().length()).max().orElse(0);
        int sizeWidth = s.devices().stream().mapToInt(d -> human(d.sizeBytes()).length()).max().orElse(0);
        for (Replies.DeviceStatus d : s.devices()) {
            StringBuilder b = new StringBuilder("  ").append(pad(d.name(), nameWidth)).append("  ")
                    .append(padLeft(human(d.sizeBytes()), sizeWidth)).append("  ");
            Replies.Tracker t = d.tracker();
            if (t == null) {
                b.append("untracked");
            } else {
                b.append("generation ").append(shortId(t.generationId().toString()))
                        .append(t.snapNumber() == 0 ? " no snapshot yet" : " snapshot #" + t.snapNumber())
                        .append(" reason=").append(t.generationReason());
            }
            if (d.snapshotId() != null) {
                b.append("  in ").append(shortId(d.snapshotId().toString()));
            }
            if (d.uri() != null) {
                b.append("  ").append(d.uri());
            }
            out.add(b.toString());
        }
        if (s.devices().isEmpty()) {
            out.add("  (none)");
        }
        out.add("snapshots:");
        for (Replies.SnapshotStatus sn : s.snapshots()) {
            out.add("  " + sn.id() + " " + state(sn) + "  " + String.join(",", sn.devices())
                    + (sn.leaseSeconds() == null ? "" : "  lease " + age(sn.leaseSeconds() * 1000) + ", "
                    + age(sn.leaseLeftMillis()) + " left"));
            out.add("    storage " + storage(sn));
            for (Replies.StatusImage i : sn.images()) {
                out.add("    " + i.device() + " " + i.image() + (i.uri() != null ? " " + i.uri() : ""));
            }
        }
        if (s.snapshots().isEmpty()) {
            out.add("  (none)");
        }
        if (!s.agentJobs().isEmpty()) {
            out.add("backup agent jobs:");
            for (Replies.AgentJobStatus j : s.agentJobs()) {
                out.add("  " + j.id() + " " + (j.exitStatus() == null ? "running" : "ended (exit " + j.exitStatus() + ")")
                        + " " + age(o.nowMillis() - j.startedAtMillis()) + "  " + String.join(" ", j.args()));
            }
        }
        if (o.repo() != null) {
            out.add("last backups in " + o.repo() + ":");
            List<String> names = new ArrayList<>(s.devices().stream().map(Replies.DeviceStatus::name).toList());
            o.lastBackups().keySet().stream().filter(n -> !names.contains(n)).sorted().forEach(names::add);
            int w = names.stream().mapToInt(String::length).max().orElse(0);
            for (String name : names) {
                LastBackup p = o.lastBackups().get(name);
                out.add("  " + pad(name, w) + "  " + (p == null ? "none"
                        : p.time() + " " + p.kind() + " " + p.id() + " (generation " + shortId(p.generation())
                        + " snapshot #" + p.snapNumber() + ")"));
            }
            if (names.isEmpty()) {
                out.add("  (none)");
            }
        }
        return String.join("\n", out);
    }

    /** {@code taken 5m12s ago (2026-12-02 10:01:33 UTC)}, {@code created 3s ago}, {@code corrupted (ENOSPC 28)}. */
    private String state(Replies.SnapshotStatus sn) {
        long since = sn.takenAtMillis() != 0 ? sn.takenAtMillis() : sn.createdAtMillis();
        String when = since == 0 ? "" : " " + age(o.nowMillis() - since) + " ago (" + TIME.format(Instant.ofEpochMilli(since))
                + ")";
        if (sn.state().equals("corrupted")) {
            return color(RED, "corrupted") + " (errno " + sn.corruptedErrno() + ")" + (sn.takenAtMillis() != 0
                    ? ", taken" + when : "");
        }
        return sn.state() + when;
    }

    /** {@code [#####-----]  42%  107 MiB of 256 MiB, 1712 chunks copied}; a bar of what is used of what is appended. */
    private String storage(Replies.SnapshotStatus sn) {
        long used = sn.usedSectors() * 512;
        long capacity = sn.capacitySectors() * 512;
        String tail = (capacity == 0 ? "none appended" : human(used) + " of " + human(capacity))
                + (sn.requestedSectors() * 512 > capacity ? ", " + human(sn.requestedSectors() * 512) + " requested" : "")
                + ", " + sn.chunksCopied() + " chunks copied";
        double fill = capacity == 0 ? 0 : Math.min(1.0, (double) used / capacity);
        String percent = padLeft((int) Math.floor(fill * 100) + "%", 4);
        // "    storage [" + bar + "] " + percent + "  " + tail fits the width, one column to spare
        int width = Math.clamp(o.columns() - 22 - tail.length(), MIN_BAR, MAX_BAR);
        int filled = (int) Math.round(fill * width);
        if (filled == 0 && used > 0) {
            filled = 1;
        }
        String bar = "#".repeat(filled);
        String rest = "-".repeat(width - filled);
        String tone = fill >= 0.9 ? RED : fill >= 0.75 ? YELLOW : GREEN;
        return "[" + color(tone, bar) + rest + "] " + percent + "  " + tail;
    }

    private String color(String code, String text) {
        return o.color() && !text.isEmpty() ? code + text + RESET : text;
    }

    private String bold(String text) {
        return color(BOLD, text);
    }

    /** 1.0 GiB, 61.0 MiB, 512 B: one decimal, binary units. */
    static String human(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, v >= 100 ? "%.0f %s" : "%.1f %s", v, units[u]);
    }

    /** 42s, 5m12s, 3h05m, 2d04h. */
    static String age(long millis) {
        long s = Math.max(0, millis) / 1000;
        if (s < 60) {
            return s + "s";
        }
        if (s < 3600) {
            return s / 60 + "m" + String.format(Locale.ROOT, "%02d", s % 60) + "s";
        }
        if (s < 86400) {
            return s / 3600 + "h" + String.format(Locale.ROOT, "%02d", s % 3600 / 60) + "m";
        }
        return s / 86400 + "d" + String.format(Locale.ROOT, "%02d", s % 86400 / 3600) + "h";
    }

    private static String shortId(String id) {
        return id == null ? "-" : id.length() > 8 ? id.substring(0, 8) : id;
    }

    private static String count(int n, String what) {
        return n + " " + what + (n == 1 ? "" : "s");
    }

    private static String pad(String s, int width) {
        return s + " ".repeat(Math.max(0, width - s.length()));
    }

    private static String padLeft(String s, int width) {
        return " ".repeat(Math.max(0, width - s.length())) + s;
    }
}
