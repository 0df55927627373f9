#!/usr/bin/env bash
# The client's ceiling for 4 KiB requests at depth 32 (docs/benchmarks-log.md, "The eleventh session"):
# fio (ioengine=nbd) against blksnapd, nbdkit file and nbdkit null (a server with no storage behind it),
# one 2 GiB file on /dev/shm, the order rotated per round. Prints "ROUND JOB SERVER IOPS FIO-CPU%".
#   bench/probes/fio-ceiling.sh        (R=rounds, RT=seconds per job, JOBS="rw:bs:qd ...")
set -uo pipefail
JOBS=${JOBS:-randwrite:4k:32 randread:4k:32}
W=/dev/shm/ub; mkdir -p $W; D=$W/disk.img
truncate -s 2G $D; fio --name=fill --filename=$D --rw=write --bs=1M --size=2G --ioengine=psync --output=/dev/null >/dev/null
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
$ROOT/bin/blksnapd --data-dir $W/b.d --device disk0=$D --listen none --socket $W/b.sock --log-level WARN >$W/b.log 2>&1 &
BP=$!
trap 'kill $BP $(cat $W/k.pid 2>/dev/null) $(cat $W/n.pid 2>/dev/null) 2>/dev/null; wait; rm -rf $W' EXIT
nbdkit -U $W/k.sock -P $W/k.pid file $D
nbdkit -U $W/n.sock -P $W/n.pid null 2G
while [ ! -S $W/b.sock ]; do kill -0 $BP 2>/dev/null || { echo "blksnapd did not start:" >&2; cat $W/b.log >&2; exit 1; }; sleep 0.2; done; sleep 1
declare -A U=([blksnapd]="nbd+unix:///disk0?socket=$W/b.sock" [nbdkit-file]="nbd+unix:///?socket=$W/k.sock" [nbdkit-null]="nbd+unix:///?socket=$W/n.sock")
run() { fio --name=j --ioengine=nbd --uri="$1" --rw=$2 --bs=$3 --iodepth=$4 --runtime=${RT:-6} --time_based --norandommap --randrepeat=0 --output-format=json 2>/dev/null | sed -n '/^{/,$p' | jq -r '"\(.jobs[0].read.iops + .jobs[0].write.iops|floor) \(.jobs[0].usr_cpu+.jobs[0].sys_cpu|floor)"'; }
run "${U[blksnapd]}" randwrite 4k 32 >/dev/null; run "${U[blksnapd]}" randread 4k 32 >/dev/null
S=(blksnapd nbdkit-file nbdkit-null)
for r in $(seq ${R:-5}); do
  for j in $JOBS; do IFS=: read -r rw bs qd <<<"$j"
    for i in 0 1 2; do s=${S[$(((i + r) % 3))]}; echo "$r $j $s $(run "${U[$s]}" $rw $bs $qd)"; done
  done
done
