#!/usr/bin/env bash
# perf stat of fio itself and of the server, per server (docs/benchmarks-log.md, "The eleventh session"):
# syscalls, context switches and CPU of the client and of blksnapd / nbdkit over one job, alternated.
#   JOB=randwrite:4k:32 R=3 bench/probes/client-cost.sh     (needs perf)
set -uo pipefail
JOB=${JOB:-randwrite:4k:32}; IFS=: read -r RW BS QD <<<"$JOB"
W=/dev/shm/fcs; mkdir -p $W; D=$W/disk.img
[ -f $D ] || { truncate -s 2G $D; fio --name=fill --filename=$D --rw=write --bs=1M --size=2G --ioengine=psync --output=/dev/null >/dev/null; }
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BLKSNAPD_JAVA_OPTS="${OPTS:-}" $ROOT/bin/blksnapd --data-dir $W/b.d --device disk0=$D --listen none --socket $W/b.sock --log-level WARN >$W/b.log 2>&1 &
BP=$!
trap 'kill $BP $(cat $W/k.pid 2>/dev/null) 2>/dev/null; wait; rm -rf $W' EXIT
nbdkit -U $W/k.sock -P $W/k.pid file $D
while [ ! -S $W/b.sock ]; do kill -0 $BP 2>/dev/null || { echo "blksnapd did not start:" >&2; cat $W/b.log >&2; exit 1; }; sleep 0.2; done; sleep 1
EV=task-clock,context-switches,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg,syscalls:sys_enter_poll,syscalls:sys_enter_ppoll
run() { perf stat -x, -e task-clock,context-switches -p $2 -o $W/pd & PD=$!; sleep 0.2; perf stat -x, -e $EV -o $W/ps fio --name=j --ioengine=nbd --uri="$1" --rw=$RW --bs=$BS --iodepth=$QD --runtime=${RT:-6} --time_based --output-format=json 2>/dev/null | sed -n '/^{/,$p' | jq -r '"\(.jobs[0].read.iops + .jobs[0].write.iops|floor) iops usr \(.jobs[0].usr_cpu|floor) sys \(.jobs[0].sys_cpu|floor) ctx \(.jobs[0].ctx)"'; kill -INT $PD; wait $PD; awk -F, '/^[0-9]/{printf "   %s %s\n",$1,$3}' $W/ps; awk -F, '/^[0-9]/{printf "   server %s %s\n",$1,$3}' $W/pd; }
run "nbd+unix:///disk0?socket=$W/b.sock" $BP >/dev/null
for r in $(seq ${R:-2}); do
  for s in b k; do
    if [ $s = b ]; then P=$BP; U="nbd+unix:///disk0?socket=$W/b.sock"; else P=$(cat $W/k.pid); U="nbd+unix:///?socket=$W/k.sock"; fi
    echo "== $r $s"; run "$U" $P
  done
done
