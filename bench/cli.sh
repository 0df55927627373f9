#!/usr/bin/env bash
# What a call of the command-line tool costs (docs/BENCHMARKS.md, "The command-line tool"):
# wall time of `blksnap --help`, `blksnap version` and `blksnap device list` through the launcher
# (bin/blksnap of this checkout, or of an installed tree given as --tree DIR), against a blksnapd on a
# temporary data directory; N runs each, interleaved, after one call that makes the class-data archive.
# Prints date, load average, the median and 90th percentile per command, the median CPU time (user +
# system, from /usr/bin/time if installed: it moves much less with the machine's load than wall
# time), and how many classes a call loads (all, and how many not from the class-data archives).
#
#   bench/cli.sh [--runs N] [--tree DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNS=25
TREE=$ROOT
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --tree) TREE=$(cd "$2" && pwd); shift 2 ;;
    *) echo "bench/cli.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
W=$(mktemp -d /tmp/blksnap-cli-bench.XXXXXX)
DAEMON=""
cleanup() { [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
"$TREE/bin/blksnapd" --data-dir "$W/d" --device "disk0=$W/disk0.img:64M" --listen none --socket "$W/nbd.sock" \
  >"$W/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 1 300); do [ -S "$W/d/control.sock" ] && break; sleep 0.1; done
[ -S "$W/d/control.sock" ] || { echo "blksnapd did not start:" >&2; cat "$W/daemon.log" >&2; exit 1; }
export BLKSNAP_CONTROL="$W/d/control.sock"
B="$TREE/bin/blksnap"
"$B" version >/dev/null    # makes the class-data archive if it is missing or stale
CMDS=("--help" "version" "device list")
TIME=""; [ -x /usr/bin/time ] && TIME=/usr/bin/time
for c in "${CMDS[@]}"; do : > "$W/t.${c// /_}"; : > "$W/c.${c// /_}"; done
for _ in $(seq 1 "$RUNS"); do
  for c in "${CMDS[@]}"; do
    if [ -n "$TIME" ]; then
      # shellcheck disable=SC2086
      s=$(date +%s%N); "$TIME" -o "$W/time" -f '%U %S' "$B" $c >/dev/null; e=$(date +%s%N)
      awk '{printf "%d\n", ($1 + $2) * 1000}' "$W/time" >> "$W/c.${c// /_}"
    else
      # shellcheck disable=SC2086
      s=$(date +%s%N); "$B" $c >/dev/null; e=$(date +%s%N)
    fi
    echo $(( (e - s) / 1000000 )) >> "$W/t.${c// /_}"
  done
done
for c in "${CMDS[@]}"; do
  # shellcheck disable=SC2086
  BLKSNAP_JAVA_OPTS="-Xlog:class+load=info:file=$W/cl.${c// /_}" "$B" $c >/dev/null
done
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; runs: $RUNS"
printf '%-14s %8s %8s %8s %8s %8s %10s\n' command median_ms p90_ms min_ms cpu_ms classes not_shared
for c in "${CMDS[@]}"; do
  f="$W/t.${c// /_}"
  sort -n "$f" > "$f.s"
  sort -n "$W/c.${c// /_}" > "$W/c.s"
  n=$(wc -l < "$f.s")
  cl="$W/cl.${c// /_}"
  cpu=$(sed -n "$(( (n + 1) / 2 ))p" "$W/c.s")
  printf '%-14s %8s %8s %8s %8s %8s %10s\n' "$c" "$(sed -n "$(( (n + 1) / 2 ))p" "$f.s")" "$(sed -n "$(( (n * 9 + 9) / 10 ))p" "$f.s")" \
    "$(head -n 1 "$f.s")" "${cpu:--}" "$(wc -l < "$cl")" "$(grep -vc 'shared objects file' "$cl" || true)"
done
