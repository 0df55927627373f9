#!/usr/bin/env bash
# What the request histograms cost the data path (docs/metrics.md): two blksnapd, one with
# `--metrics 127.0.0.1:PORT` (every request timed into a Micrometer Timer) and one without (the
# server's observer is a no-op), each serving its own 1 GiB device on /dev/shm (written full). Per
# round every job runs on both, the order swapped every round, each time-based (T seconds, 1 s ramp);
# a scrape of /metrics after every job on the metrics daemon, so the series are read too.
#   R=6 T=5 bench/probes/metrics-ab.sh      JOBS="randwrite:4k:1 randread:4k:1 randwrite:4k:32 write:1M:8"
# Prints each round's figures and, at the end, the median ratio (with / without) per job.
set -uo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BASE=${DIR:-/dev/shm/metrics-ab}
PORT=${PORT:-19091}
JOBS=${JOBS:-randwrite:4k:1 randread:4k:1 randwrite:4k:32 write:1M:8}
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; wait; rm -rf "$BASE"' EXIT
. "$ROOT/bench/probes/blksnapd.sh"
start() {   # start NAME [FLAGS...]: a daemon on $BASE/NAME, its URI in U_NAME
  local name=$1; shift
  W=$BASE/$name; mkdir -p "$W"; D=$W/disk.img
  fio --name=fill --filename="$D" --rw=write --bs=1M --size=1024M --ioengine=psync --output=/dev/null >/dev/null
  start_blksnapd "$@"
  PIDS+=("$BP")
  printf -v "U_$name" '%s' "$U"
}
start plain
start metered --metrics 127.0.0.1:$PORT
curl -fsS "http://127.0.0.1:$PORT/metrics" >/dev/null || { echo "no /metrics on port $PORT" >&2; exit 1; }
job() {   # job URI RW BS QD -> IOPS (4k) or MiB/s (1M)
  local f='.jobs[0].'
  case $2 in *read*) f+=read ;; *) f+=write ;; esac
  if [ "$3" = 1M ]; then f+='.bw_bytes/1048576|floor'; else f+='.iops|floor'; fi
  fio --name=j --ioengine=nbd --uri="$1" --rw=$2 --bs=$3 --iodepth=$4 --size=1G --time_based \
    --runtime=${T:-5} --ramp_time=1 --norandommap --randrepeat=0 --output-format=json \
    --output=$BASE/j.json >/dev/null 2>&1
  jq -r "$f" $BASE/j.json
}
for u in "$U_plain" "$U_metered"; do   # warm both JITs
  fio --name=w --ioengine=nbd --uri="$u" --rw=randwrite --bs=4k --iodepth=8 --runtime=3 --time_based --output=/dev/null >/dev/null 2>&1
done
declare -A RATIOS
for r in $(seq ${R:-6}); do
  for spec in $JOBS; do
    IFS=: read -r rw bs qd <<<"$spec"
    if [ $((r % 2)) = 1 ]; then
      p=$(job "$U_plain" $rw $bs $qd); m=$(job "$U_metered" $rw $bs $qd)
    else
      m=$(job "$U_metered" $rw $bs $qd); p=$(job "$U_plain" $rw $bs $qd)
    fi
    curl -fsS "http://127.0.0.1:$PORT/metrics" >/dev/null
    ratio=$(echo "scale=3; $m/$p" | bc)
    RATIOS[$spec]="${RATIOS[$spec]:-} $ratio"
    echo "round $r $spec without $p with $m ratio $ratio"
  done
done
for spec in $JOBS; do
  echo "$spec median $(printf '%s\n' ${RATIOS[$spec]} | sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}') of:${RATIOS[$spec]}"
done
