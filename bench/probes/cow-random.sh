#!/usr/bin/env bash
# Fresh random 4 KiB writes with copy-on-write (docs/benchmarks-log.md, "The eleventh session"): one daemon,
# a 1 GiB device on /dev/shm; per round a no-snapshot random pass over 128 MiB (each block once) and the
# same pass right after a take onto written storage; prints both and the copy-on-write histogram.
#   R=5 bench/probes/cow-random.sh       (OPTS=-Dblksnap.kernelCopy=false for the buffered copy)
# SEQ=1: the first copy-on-write pass instead: 1 MiB sequential writes over the whole device (MiB/s).
set -uo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}; W=/dev/shm/rc; mkdir -p $W; D=$W/disk.img
[ -f $D ] || { truncate -s 1G $D; fio --name=fill --filename=$D --rw=write --bs=1M --size=1G --ioengine=psync --output=/dev/null >/dev/null; }
trap 'kill ${BP:-} 2>/dev/null; wait; rm -rf $W' EXIT
. "$ROOT/bench/probes/blksnapd.sh"
start_blksnapd --metrics=127.0.0.1:9619
if [ "${SEQ:-0}" = 1 ]; then
  job() { fio --name=j --ioengine=nbd --uri="$U" --rw=write --bs=1M --iodepth=8 --size=1G --output-format=json 2>/dev/null | sed -n '/^{/,$p' | jq -r '.jobs[0].write.bw_bytes/1048576|floor'; }
else
  job() { fio --name=j --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k --iodepth=8 --size=${RS:-128M} --output-format=json 2>/dev/null | sed -n '/^{/,$p' | jq -r '.jobs[0].write.iops|floor'; }
fi
fio --name=w --ioengine=nbd --uri="$U" --rw=write --bs=1M --iodepth=8 --runtime=2 --time_based --output=/dev/null >/dev/null 2>&1
job >/dev/null; job >/dev/null
id=$(bs snapshot create --device disk0); bs snapshot destroy --id $id
for r in $(seq ${R:-5}); do
  b=$(job)
  rm -f $W/diff.img; dd if=/dev/zero of=$W/diff.img bs=1M count=1280 conv=fsync status=none
  id=$(bs snapshot create --device disk0); bs snapshot append-storage --id $id --file $W/diff.img >/dev/null; bs snapshot take --id $id
  s=$(job)
  curl -s 127.0.0.1:9619/metrics | grep -E "^blksnap_cow_seconds_(sum|count)|cow_seconds_bucket.*le=\"(0.00025|0.0005|0.001)\"" | sed "s/{.*}//" | tr "\n" " "; echo
  bs snapshot destroy --id $id
  echo "round $r base $b snap $s ratio $(echo "scale=2; $s/$b" | bc)"
done
