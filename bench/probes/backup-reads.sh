#!/usr/bin/env bash
# A full backup read over NBD by a separate process (`blksnap backup --agent off`, what an S3 backup or
# a non-root user does), one daemon per large-read path, alternated per round (docs/benchmarks-log.md,
# "The fourteenth session"). Device: SIZE (default 2G) on /dev/shm, half random, half text; repository
# on /dev/shm, new for every backup. Prints the seconds of each backup and the CPU of both processes.
#   R=4 MODES="auto sendfile copy" bench/probes/backup-reads.sh
set -uo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}; W=/dev/shm/rb; mkdir -p $W; D=$W/disk.img
SIZE=${SIZE:-2G}; BYTES=$(numfmt --from=iec $SIZE)
BP=""
trap '[ -n "$BP" ] && kill $BP 2>/dev/null; wait; rm -rf $W' EXIT
python3 "$ROOT/bench/backup-data.py" $D $BYTES
for r in $(seq ${R:-4}); do
  for m in ${MODES:-auto sendfile}; do
    rm -rf $W/b.d $W/repo
    $ROOT/bin/blksnapd --data-dir $W/b.d --device disk0=$D --listen none --log-level WARN --large-reads $m >$W/b.log 2>&1 &
    BP=$!
    while [ ! -S $W/b.d/control.sock ]; do kill -0 $BP 2>/dev/null || { cat $W/b.log >&2; exit 1; }; sleep 0.2; done
    s=$(date +%s.%N)
    BLKSNAP_CONTROL=$W/b.d/control.sock /usr/bin/time -f "%U %S" -o $W/t.txt $ROOT/bin/blksnap backup --agent off --repo $W/repo --device disk0 >$W/o.txt 2>&1 \
      || { echo "backup failed:" >&2; cat $W/o.txt >&2; exit 1; }
    e=$(echo "$(date +%s.%N) - $s" | bc)
    d=$(awk '{print $14+$15}' /proc/$BP/stat); tck=$(getconf CLK_TCK)
    echo "round $r $m seconds $(printf %.2f $e) client_cpu $(awk '{printf "%.2f", $1+$2}' $W/t.txt) daemon_cpu $(echo "scale=2; $d/$tck" | bc)"
    kill $BP; wait $BP 2>/dev/null; BP=""
  done
done
