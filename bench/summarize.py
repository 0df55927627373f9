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


def main():
    out = sys.argv[1]
    rows, units = load(os.path.join(out, "raw.tsv"))
    p = []
    try:
        with open(os.path.join(out, "env.txt")) as f:
            p.append("```\n" + f.read().strip() + "\n```\n")
    except OSError:
        pass

    # ---- peers ----
    keys = [k for (s, k, _) in rows if s == "peers"]
    keys = list(dict.fromkeys(keys))
    if keys:
        servers = ["raw-psync", "blksnapd", "nbdkit", "qemu-nbd", "qemu-nbd-nocache"]
        p.append("### NBD servers, same backing file on /dev/shm, Unix sockets (medians)\n")
        p.append("fio `ioengine=nbd`, numjobs=1; 1 MiB jobs in MiB/s, 4 KiB jobs in IOPS; nbdcopy in MiB/s "
                 "(whole export to `null:`). raw-psync = fio psync on the file (QD1; the physical limit).\n")
        p.append("| job | " + " | ".join(servers) + " | blksnapd / nbdkit | goal ≥ 1.0 |")
        p.append("|---|" + "---|" * (len(servers) + 2))
        for k in keys:
            u = units[("peers", k)]
            cells = [fmt(med(rows.get(("peers", k, s), {})), u) for s in servers]
            r = ratio(rows.get(("peers", k, "blksnapd"), {}), rows.get(("peers", k, "nbdkit"), {}))
            p.append(f"| {k} ({u}) | " + " | ".join(cells) + f" | {fr(r)} | {verdict(r, 1.0)} |")
        p.append("")

    # ---- scenarios ----
    sk = [k for (s, k, _) in rows if s == "scenarios"]
    if sk:
        def sv(srv, key):
            return rows.get(("scenarios", key, srv), {})
        p.append("### blksnap scenarios (fio nbd, iodepth 8) — blksnapd vs QEMU copy-before-write\n")
        p.append("Values are medians (MiB/s for 1 MiB passes, IOPS for 4 KiB); ratios are per-round, "
                 "relative to the same server with no tracker / no snapshot.\n")
        p.append("| scenario | blksnapd | blksnapd ratio | QEMU | QEMU ratio | goal | verdict |")
        p.append("|---|---|---|---|---|---|---|")
        spec = [
            ("no tracker, seq write 1M", "base-write1M", None, None),
            ("no tracker, rand write 4k", "base-randwrite4k", None, None),
            ("no tracker, seq read 1M", "base-read1M", None, None),
            ("no tracker, rand read 4k", "base-randread4k", None, None),
            ("tracker attached, seq write 1M", "tracked-write1M", "base-write1M", 0.95),
            ("tracker attached, rand write 4k", "tracked-randwrite4k", "base-randwrite4k", 0.95),
            ("snapshot, 1st pass seq write 1M (COW)", "snap-write1M-pass1", "base-write1M", 0.6),
            ("snapshot, 2nd pass seq write 1M", "snap-write1M-pass2", "base-write1M", 0.95),
            ("snapshot, fresh rand write 4k (COW)", "snap-randwrite4k-fresh", "base-randwrite4k", 0.5),
            ("image seq read 1M, cold", "img-cold-read1M", "base-read1M", 0.95),
            ("image rand read 4k, cold", "img-cold-randread4k", "base-randread4k", 0.5),
            ("image seq read 1M, after COW", "img-copied-read1M", "base-read1M", 0.95),
            ("image rand read 4k, after COW", "img-copied-randread4k", "base-randread4k", 0.5),
        ]
        for label, key, base, goal in spec:
            u = units.get(("scenarios", key), "")
            o, q = sv("blksnapd", key), sv("qemu", key)
            ro = ratio(o, sv("blksnapd", base)) if base else None
            rq = ratio(q, sv("qemu", base)) if base else None
            g = f"≥ {goal}" if goal else ""
            vd = verdict(ro, goal, rq if key.startswith("snap-") else None) if goal else ""
            p.append(f"| {label} | {fmt(med(o), u)} | {fr(ro) if base else ''} | {fmt(med(q), u)} | "
                     f"{fr(rq) if base else ''} | {g} | {vd} |")
        p.append("")

    # ---- engine ----
    ek = [(k, s) for (sec, k, s) in rows if sec == "engine"]
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
