#!/usr/bin/env bash
# A/B of persistent change tracking (docs/persistence.md): the same fio jobs against two blksnapd,
# one with the defaults (trackers in DATA_DIR/state, 64 MiB journal regions, checkpoints every 60 s)
# and one with --no-persist, trackers attached on both, alternating job by job, ROUNDS rounds.
# Device files and data directories are on a disk-backed filesystem (TMPDIR, default /tmp), so the
# journal syncs cost what they cost. Prints the median of each job and persist/no-persist.
#   bench/persist-ab.sh [ROUNDS (3)] [RUNTIME seconds (15)] [SIZE (1G)] [extra blksnapd flags for A...]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=${1:-3}; RUNTIME=${2:-15}; SIZE=${3:-1G}; shift $(( $# < 3 ? $# : 3 ))
EXTRA=("$@")
command -v fio >/dev/null || { echo "persist-ab.sh: needs fio with ioengine=nbd" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/persist-ab.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
wait_sock() { for _ in $(seq 600); do [ -S "$1" ] && return 0; sleep 0.1; done; echo "no socket $1" >&2; exit 1; }
start() {  # start TAG FLAGS...
  local tag=$1; shift
  "$ROOT/bin/blksnapd" --data-dir "$W/$tag.d" --device "disk0=$W/$tag.img:$SIZE" --listen none \
    --socket "$W/$tag.sock" --log-level WARN "$@" >"$W/$tag.log" 2>&1 &
  PIDS+=($!)
  wait_sock "$W/$tag.sock"; wait_sock "$W/$tag.d/control.sock"
  export BLKSNAP_CONTROL="$W/$tag.d/control.sock"
  id=$("$ROOT/bin/blksnap" snapshot create --device disk0)   # attaches the tracker
  "$ROOT/bin/blksnap" snapshot destroy --id "$id"
  fio --name=fill --ioengine=nbd --uri="nbd+unix:///disk0?socket=$W/$tag.sock" --rw=write --bs=1M \
    --size="$SIZE" --iodepth=8 --output=/dev/null
}
start persist "${EXTRA[@]}"
start nopersist --no-persist
job() {  # job TAG RW BS QD -> IOPS (4k) or MiB/s (1M)
  local js="$W/$1-$2-$3-$4.json"
  fio --name=ab --ioengine=nbd --uri="nbd+unix:///disk0?socket=$W/$1.sock" --rw="$2" --bs="$3" --iodepth="$4" \
    --time_based --runtime="$RUNTIME" --ramp_time=1 --output-format=json --output="$js" >/dev/null
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["write"]; bs=sys.argv[2]
print(round(j["bw"]/1024,1) if bs=="1M" else round(j["iops"]))' "$js" "$3"
}
declare -A R
JOBS="randwrite:4k:1 randwrite:4k:32 write:1M:8"
for r in $(seq "$ROUNDS"); do
  for j in $JOBS; do
    IFS=: read -r rw bs qd <<<"$j"
    for tag in persist nopersist; do R[$tag:$j]="${R[$tag:$j]:-} $(job "$tag" "$rw" "$bs" "$qd")"; done
  done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf '%-18s %12s %12s %8s   %s\n' job persist no-persist ratio "rounds (persist | no-persist)"
for j in $JOBS; do
  p=$(echo "${R[persist:$j]}" | median); n=$(echo "${R[nopersist:$j]}" | median)
  if [[ $j == *:1M:* ]]; then unit=MiB/s; else unit=IOPS; fi
  printf '%-18s %12s %12s %8s   %s |%s\n' "$j ($unit)" "$p" "$n" "$(python3 -c "print(f'{$p/$n:.2f}')")" \
    "${R[persist:$j]}" "${R[nopersist:$j]}"
done
