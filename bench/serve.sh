#!/usr/bin/env bash
# blksnap for Java — instant-access benchmark (issue 12): a point served in place by `blksnap serve`
# against the same point restored to a file and served by blksnapd, side by side in one run.
# See docs/BENCHMARKS.md ("Instant access").
#
#   bench/serve.sh [--size SIZE] [--rounds N] [--runtime S] [--cache SIZE]
#       (defaults 1G, 3, 10, 256M; the device: half random, a quarter text, a quarter zeros)
#
# Each round, for each server (alternating which goes first): a fresh process (so the chunk cache
# starts cold), then nbdcopy of the whole export to null: (sequential, several connections), fio
# sequential 1 MiB reads at QD8, then fio random 4 KiB reads at QD1 and QD8 for RUNTIME s each.
# Medians over the rounds; a table on stdout and in bench/results/serve-<timestamp>/table.md.
# Everything lives in /dev/shm: the figures are the servers' costs, not a disk's.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIZE=1G ROUNDS=3 RUNTIME=10 CACHE=256M
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --runtime) RUNTIME=$2; shift ;;
    --cache) CACHE=$2; shift ;;
    *) echo "usage: bench/serve.sh [--size SIZE] [--rounds N] [--runtime S] [--cache SIZE]" >&2; exit 64 ;;
  esac
  shift
done
for t in fio nbdcopy jq python3 bc; do
  command -v $t >/dev/null || { echo "bench/serve.sh: needs $t (apt-get install -y fio libnbd-bin jq python3 bc)" >&2; exit 69; }
done
OUT="$ROOT/bench/results/serve-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
W=$(mktemp -d /dev/shm/blksnap-serve-bench.XXXXXX)
DAEMON="" SERVE=""
cleanup() {
  [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null && wait "$SERVE" 2>/dev/null || true
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
BYTES=$(numfmt --from=iec "$SIZE")
BK="$ROOT/bin/blksnap"

echo "== data: $SIZE, half random, a quarter text, a quarter zeros" >&2
python3 - "$W/disk0.img" "$BYTES" <<'PY'
import os, sys
path, size = sys.argv[1], int(sys.argv[2])
line = b"the quick brown fox jumps over the lazy dog; serve benchmark text line 0123456789\n"
text = (line * (16 * 1024 * 1024 // len(line) + 1))[:16 * 1024 * 1024]
with open(path, "wb") as f:
    done = 0
    while done < size * 3 // 4:
        n = min(16 << 20, size * 3 // 4 - done)
        f.write(os.urandom(n) if done < size // 2 else text[:n])
        done += n
    f.truncate(size)
PY
mkdir -p "$W/data"
(cd "$ROOT" && exec bin/blksnapd --data-dir "$W/data" --listen none --device "disk0=$W/disk0.img" >"$OUT/daemon.log" 2>&1) &
DAEMON=$!
export BLKSNAP_CONTROL="$W/data/control.sock"
for _ in $(seq 100); do [ -S "$BLKSNAP_CONTROL" ] && break; sleep 0.2; done
"$BK" --json backup --repo "$W/repo" --device disk0 --storage-dir "$W/data" --storage-size 256M >"$OUT/backup.out"
ID=$(jq -r '.points[0].id' "$OUT/backup.out")
"$BK" restore --repo "$W/repo" --point "$ID" --to "$W/restored.img" >/dev/null
"$BK" device add "restored=$W/restored.img" >/dev/null
cmp "$W/restored.img" "$W/disk0.img"
declare -A URI=([serve]="nbd+unix:///$ID/disk0?socket=$W/serve.sock"
                [blksnapd]="nbd+unix:///restored?socket=$W/data/nbd.sock")

start_serve() {  # start_serve LOG
  (cd "$ROOT" && exec bin/blksnap serve --repo "$W/repo" --socket "$W/serve.sock" --cache "$CACHE" >"$1" 2>&1) &
  SERVE=$!
  for _ in $(seq 150); do grep -q '^serving ' "$1" 2>/dev/null && [ -S "$W/serve.sock" ] && return 0; sleep 0.2; done
  echo "bench/serve.sh: serve did not start: $(tail -5 "$1")" >&2; exit 1
}
stop_serve() { kill "$SERVE"; wait "$SERVE" 2>/dev/null || true; SERVE=""; }

fio_job() {  # fio_job LABEL URI RW BS QD  -> IOPS (4k) or MiB/s
  local label=$1 uri=$2 rw=$3 bs=$4 qd=$5 js="$OUT/fio-$1.json"
  fio --name="$label" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs=1 \
      --runtime="$RUNTIME" --time_based --norandommap --randrepeat=0 --output-format=json --output="$js" >/dev/null
  if [ "$bs" = 4k ]; then jq -r '.jobs[0].read.iops' "$js"; else jq -r '.jobs[0].read.bw_bytes / 1048576' "$js"; fi
}
now() { date +%s.%N; }
RAW="$OUT/raw.tsv"; : >"$RAW"
for r in $(seq "$ROUNDS"); do
  order=(serve blksnapd); [ $((r % 2)) = 0 ] && order=(blksnapd serve)
  for s in "${order[@]}"; do
    [ "$s" = serve ] && start_serve "$OUT/serve-$r.log"
    t0=$(now); nbdcopy "${URI[$s]}" null:; t=$(echo "$(now) - $t0" | bc)
    printf 'nbdcopy\t%s\t%s\t%s\n' "$s" "$r" "$(echo "scale=1; $BYTES / 1048576 / $t" | bc)" >>"$RAW"
    printf 'seq1m\t%s\t%s\t%s\n' "$s" "$r" "$(fio_job "r$r-$s-seq" "${URI[$s]}" read 1M 8)" >>"$RAW"
    printf 'rand4k_qd1\t%s\t%s\t%s\n' "$s" "$r" "$(fio_job "r$r-$s-rand1" "${URI[$s]}" randread 4k 1)" >>"$RAW"
    printf 'rand4k_qd8\t%s\t%s\t%s\n' "$s" "$r" "$(fio_job "r$r-$s-rand8" "${URI[$s]}" randread 4k 8)" >>"$RAW"
    if [ "$s" = serve ]; then
      stop_serve
      grep 'serve: stopped' "$OUT/serve-$r.log" >>"$OUT/serve-stats.txt" || true
    fi
    echo "round $r $s done" >&2
  done
done
med() { awk -F'\t' -v k="$1" -v s="$2" '$1==k && $2==s {print $4}' "$RAW" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { echo "scale=2; $1 / $2" | bc; }
{
  echo "| $SIZE point (half random, 1/4 text, 1/4 zeros), /dev/shm, medians of $ROUNDS rounds | blksnap serve (cache $CACHE, cold each round) | restored file served by blksnapd | serve / blksnapd |"
  echo "|---|---|---|---|"
  for k in nbdcopy seq1m rand4k_qd1 rand4k_qd8; do
    case $k in
      nbdcopy) label="nbdcopy URI null: (whole export), MiB/s" ;;
      seq1m) label="fio read 1M QD8, MiB/s" ;;
      rand4k_qd1) label="fio randread 4k QD1, IOPS" ;;
      rand4k_qd8) label="fio randread 4k QD8, IOPS" ;;
    esac
    a=$(med $k serve) b=$(med $k blksnapd)
    echo "| $label | $a | $b | $(ratio "$a" "$b") |"
  done
} | tee "$OUT/table.md"
echo "raw values: $RAW; serve's counters per round: $OUT/serve-stats.txt" >&2
