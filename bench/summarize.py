#!/usr/bin/env python3
"""Turns bench/results/<run>/raw.tsv into the Markdown table of medians and ratios.

raw.tsv lines: section, key, server, round, value, unit (tab-separated).
Ratios are the median of the per-round ratios (both sides measured in the same round), which is
less sensitive to load drifting over the run than a ratio of medians.
"""
import json
import math
import os
import statistics
import sys
from collections import defaultdict


def load(path):
    rows = defaultdict(dict)   # (section, key, server) -> {round: value}
    units = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 6:
                continue
            sec, key, srv, rnd, val, unit = parts
            try:
                v = float(val)
            except ValueError:
                continue
            if math.isnan(v):
                continue
            rows[(sec, key, srv)][rnd] = v
            units[(sec, key)] = unit
    return rows, units


def med(d):
    return statistics.median(d.values()) if d else None


def ratio(num, den):
    """Median of per-round ratios num[r] / den[r] over the rounds both have."""
    rs = [num[r] / den[r] for r in num if r in den and den[r] > 0]
    return (statistics.median(rs), min(rs), max(rs), len(rs)) if rs else None


def fmt(v, unit=""):
    if v is None:
        return "—"
    if unit == "IOPS":
        return f"{v / 1000:.1f}k"
    if unit in ("MiB/s",):
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def fr(r):
    if r is None:
        return "—"
    m, lo, hi, n = r
    return f"**{m:.2f}×**" + (f" ({lo:.2f}–{hi:.2f})" if n > 1 else "")


def verdict(r, goal, peer=None):
    if r is None:
        return "—"
    ok = r[0] >= goal
    s = "met" if ok else "MISSED"
    if peer is not None:
        s += ", ahead of QEMU" if r[0] >= peer[0] else ", behind QEMU"
    return s


def summarize_medium(rows, units, p, sfx, where):
    """The peers and scenarios tables of one medium (sections 'peers' + sfx, 'scenarios' + sfx)."""
    P, S = "peers" + sfx, "scenarios" + sfx
    # ---- peers ----
    keys = [k for (s, k, _) in rows if s == P]
    keys = list(dict.fromkeys(keys))
    if keys:
        servers = ["raw-psync", "blksnapd", "nbdkit", "qemu-nbd", "qemu-nbd-nocache"]
        p.append(f"### NBD servers, same backing file on {where}, Unix sockets (medians)\n")
        p.append("fio `ioengine=nbd`, numjobs=1; 1 MiB jobs in MiB/s, 4 KiB jobs in IOPS; nbdcopy in MiB/s "
                 "(whole export to `null:`). raw-psync = fio psync on the file (QD1; the physical limit)."
                 + (" Each job starts with the whole file in the page cache (read in before each server's"
                    " turn); the `_uncached` row drops the file's pages before each server's turn instead,"
                    " so its reads reach the virtio disk." if sfx else "") + "\n")
        p.append("| job | " + " | ".join(servers) + " | blksnapd / nbdkit | goal ≥ 1.2 |")
        p.append("|---|" + "---|" * (len(servers) + 2))
        for k in keys:
            u = units[(P, k)]
            cells = [fmt(med(rows.get((P, k, s), {})), u) for s in servers]
            r = ratio(rows.get((P, k, "blksnapd"), {}), rows.get((P, k, "nbdkit"), {}))
            # the uncached row is there to show the disk's share, not a goal: its reads wait for the
            # virtio disk, whose latency moves with the host (1-2 ms to 75 us within minutes here)
            vd = "(no goal: disk-bound)" if k.endswith("_uncached") else verdict(r, 1.2)
            p.append(f"| {k} ({u}) | " + " | ".join(cells) + f" | {fr(r)} | {vd} |")
        p.append("")

    # ---- scenarios ----
    sk = [k for (s, k, _) in rows if s == S]
    if sk:
        def sv(srv, key):
            return rows.get((S, key, srv), {})
        p.append(f"### blksnap scenarios on {where} (fio nbd, iodepth 8) — blksnapd vs QEMU copy-before-write\n")
        p.append("Values are medians (MiB/s for 1 MiB passes, IOPS for 4 KiB); ratios are per-round, "
                 "relative to the same server with no tracker / no snapshot. Storage (ours) and target "
                 "(QEMU's) written once before each snapshot, except the row marked fresh storage. Rows marked "
                 "timed loop over the device for --scn-timed seconds after 1 s of ramp; the others are one "
                 "pass (each block once).\n")
        p.append("| scenario | blksnapd | blksnapd ratio | QEMU | QEMU ratio | goal | verdict |")
        p.append("|---|---|---|---|---|---|---|")
        # Keys ending in -timed loop over the device for --scn-timed seconds (since 2026-12-04, the
        # fourteenth session); the rest are one pass. Older runs' keys (one pass everywhere) keep
        # their rows, so their raw.tsv still renders; a run has one set or the other.
        spec = [
            ("no tracker, seq write 1M, one pass", "base-write1M", None, None),
            ("no tracker, seq write 1M, timed", "base-write1M-timed", None, None),
            ("no tracker, rand write 4k, each block once", "base-randwrite4k", None, None),
            ("no tracker, rand write 4k, timed", "base-randwrite4k-timed", None, None),
            ("no tracker, seq read 1M", "base-read1M", None, None),
            ("no tracker, seq read 1M, timed", "base-read1M-timed", None, None),
            ("no tracker, rand read 4k", "base-randread4k", None, None),
            ("tracker attached, seq write 1M", "tracked-write1M", "base-write1M", 0.97),
            ("tracker attached, seq write 1M, timed", "tracked-write1M-timed", "base-write1M-timed", 0.97),
            ("tracker attached, rand write 4k", "tracked-randwrite4k", "base-randwrite4k", 0.97),
            ("tracker attached, rand write 4k, timed", "tracked-randwrite4k-timed", "base-randwrite4k-timed", 0.97),
            ("snapshot, 1st pass seq write 1M (COW)", "snap-write1M-pass1", "base-write1M", 0.7),
            ("snapshot, 1st pass seq write 1M (COW), fresh storage", "snap-write1M-pass1-freshstorage",
             "base-write1M", None),
            ("snapshot, 2nd pass seq write 1M", "snap-write1M-pass2", "base-write1M", 0.97),
            ("snapshot, 2nd pass seq write 1M, timed", "snap-write1M-pass2-timed", "base-write1M-timed", 0.97),
            ("snapshot, fresh rand write 4k (COW)", "snap-randwrite4k-fresh", "base-randwrite4k", 0.6),
            ("image seq read 1M, cold", "img-cold-read1M", "base-read1M", 0.95),
            ("image seq read 1M, cold, timed", "img-cold-read1M-timed", "base-read1M-timed", 0.95),
            ("image rand read 4k, cold", "img-cold-randread4k", "base-randread4k", 0.5),
            ("image seq read 1M, after COW", "img-copied-read1M", "base-read1M", 0.95),
            ("image seq read 1M, after COW, timed", "img-copied-read1M-timed", "base-read1M-timed", 0.95),
            ("image rand read 4k, after COW", "img-copied-randread4k", "base-randread4k", 0.5),
        ]
        for label, key, base, goal in spec:
            u = units.get((S, key), "")
            o, q = sv("blksnapd", key), sv("qemu", key)
            if not o and not q:
                continue
            ro = ratio(o, sv("blksnapd", base)) if base else None
            rq = ratio(q, sv("qemu", base)) if base else None
            g = f"≥ {goal}" if goal else ""
            vd = verdict(ro, goal, rq if key.startswith("snap-") else None) if goal else ""
            p.append(f"| {label} | {fmt(med(o), u)} | {fr(ro) if base else ''} | {fmt(med(q), u)} | "
                     f"{fr(rq) if base else ''} | {g} | {vd} |")
        p.append("")


def main():
    out = sys.argv[1]
    rows, units = load(os.path.join(out, "raw.tsv"))
    p = []
    try:
        with open(os.path.join(out, "env.txt")) as f:
            p.append("```\n" + f.read().strip() + "\n```\n")
    except OSError:
        pass

    for sfx, where in (("", "/dev/shm"), ("-disk", "the root disk (ext4)")):
        summarize_medium(rows, units, p, sfx, where)

    # ---- persistent change tracking ----
    pk = [k for (s, k, _) in rows if s == "persist" and not k.startswith("start-")]
    pk = list(dict.fromkeys(pk))
    if pk:
        p.append("### Persistent change tracking (tracker attached; fio nbd, medians)\n")
        p.append("mem = `--no-persist` (CBT in memory only); pshm = state journaled in a data dir on /dev/shm; "
                 "pdisk = in a data dir on the root filesystem. Ratios per round against mem.\n")
        p.append("| job | mem | pshm | pdisk | pshm / mem | pdisk / mem | goal ≥ 0.95 |")
        p.append("|---|---|---|---|---|---|---|")
        for k in pk:
            u = units[("persist", k)]
            m, s1, s2 = (rows.get(("persist", k, t), {}) for t in ("mem", "pshm", "pdisk"))
            r1, r2 = ratio(s1, m), ratio(s2, m)
            worst = min([r for r in (r1, r2) if r], key=lambda r: r[0], default=None)
            p.append(f"| {k} ({u}) | {fmt(med(m), u)} | {fmt(med(s1), u)} | {fmt(med(s2), u)} | {fr(r1)} | {fr(r2)} "
                     f"| {verdict(worst, 0.95)} |")
        p.append("")
    sk2 = [k for (s, k, _) in rows if s == "persist" and k.startswith("start-")]
    if sk2:
        p.append("| daemon start, 10 TiB device | median (s) | min–max |")
        p.append("|---|---|---|")
        for k in dict.fromkeys(sk2):
            d = rows[("persist", k, "blksnapd")]
            p.append(f"| {k[len('start-10T-'):]} | {med(d):.2f} | {min(d.values()):.2f}–{max(d.values()):.2f} |")
        p.append("")

    # ---- engine ----
    ek = [(k, s) for (sec, k, s) in rows if sec == "engine" and not k.startswith("scale-")]
    if ek:
        p.append("### Engine (in-process, `org.blksnap.bench.EngineProbe`)\n")
        p.append("| measurement | value | goal | verdict |")
        p.append("|---|---|---|---|")
        for k, s in dict.fromkeys(ek):
            u = units[("engine", k)]
            v = med(rows[("engine", k, s)])
            goal, ok = "", ""
            if k == "take-16dev-1T-idle" and s == "median":
                goal, ok = "< 10 ms", ("met" if v < 10 else "MISSED")
            if k == "heap-per-snapshot-10T" and s == "snapshot":
                goal, ok = "< 64 MiB", ("met" if v < 64 else "MISSED")
            p.append(f"| {k} {s} | {v:,.3f} {u} | {goal} | {ok} |")
        p.append("")

    # ---- cost curves (EngineProbe --only scale) ----
    ck = [(k, s) for (sec, k, s) in rows if sec == "engine" and k.startswith("scale-")]
    if ck:
        p.append("### Cost curves (in-process, `EngineProbe --only scale`)\n")
        p.append("Take latency and heap by device count (1 TiB each) and by device size; first-pass copy-on-write "
                 "and image reads (1 MiB, sequential, 1 GiB in all) by the number of threads, each on its own "
                 "device of one snapshot. Medians.\n")
        p.append("| measurement | value |")
        p.append("|---|---|")
        for k, s in dict.fromkeys(ck):
            u = units[("engine", k)]
            v = med(rows[("engine", k, s)])
            p.append(f"| {k[len('scale-'):]} {s} | {v:,.3f} {u} |")
        p.append("")

    # ---- jmh ----
    jp = os.path.join(out, "jmh.json")
    if os.path.exists(jp):
        with open(jp) as f:
            res = json.load(f)
        p.append("### JMH hot paths\n")
        p.append("| benchmark | params | score | error | unit |")
        p.append("|---|---|---|---|---|")
        for b in res:
            m = b["primaryMetric"]
            params = ",".join(f"{k}={v}" for k, v in (b.get("params") or {}).items())
            p.append(f"| {b['benchmark'].replace('org.blksnap.bench.', '')} | {params} | "
                     f"{m['score']:,.1f} | ±{m['scoreError']:,.1f} | {m['scoreUnit']} |")
        p.append("")
    print("\n".join(p))


if __name__ == "__main__":
    main()
