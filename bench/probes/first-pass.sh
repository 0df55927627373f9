#!/usr/bin/env bash
# The first copy-on-write pass against no snapshot, one daemon, one pass of SZ MiB each (1 MiB
# writes, QD8), on the root disk by default (docs/benchmarks-log.md, "The fifteenth session"). Per round:
# a base pass, then a snapshot onto storage written once (as the harness does) and the first pass.
# The filesystem is written back (sync -f) before each pass.
#   R=3 SZ=2048 bench/probes/first-pass.sh      DIR=/dev/shm/fp for tmpfs; OPTS for JVM properties,
#   ARGS for daemon flags (e.g. ARGS=--no-persist, ARGS=--cbt-region=1G)
# PRELUDES alternates what comes before the first pass, each in every round ("The eighteenth session"):
#   plain  the default above
#   read   as plain, with cold image reads first (1 MiB sequential for 4 s, then 4 KiB random for RR s)
#   fresh  storage the daemon creates (append-storage --size: allocated, never written)
#   e.g. DIR=/dev/shm/fp SZ=1024 R=4 RR=10 PRELUDES="plain read fresh" bench/probes/first-pass.sh
set -uo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}; W=${DIR:-/var/tmp/fp}; SZ=${SZ:-2048}
. "$ROOT/bench/probes/blksnapd.sh"
probe_device $SZ
start_blksnapd ${ARGS:-}
pass() {
  sync -f $W
  fio --name=j --ioengine=nbd --uri="$U" --rw=write --bs=1M --iodepth=8 --size=${SZ}M --output-format=json --output=$W/j.json >/dev/null 2>&1
  jq -r '.jobs[0].write.bw_bytes/1048576|floor' $W/j.json
}
fio --name=w --ioengine=nbd --uri="$U" --rw=write --bs=1M --iodepth=8 --runtime=2 --time_based --output=/dev/null >/dev/null 2>&1
for r in $(seq ${R:-3}); do
  for v in ${PRELUDES:-plain}; do
    b=$(pass)
    id=$(bs snapshot create --device disk0)
    rm -f $W/diff.img
    if [ $v = fresh ]; then
      bs snapshot append-storage --id $id --file $W/diff.img --size $((SZ + 256))M >/dev/null
    else
      dd if=/dev/zero of=$W/diff.img bs=1M count=$((SZ + 256)) conv=fsync status=none
      bs snapshot append-storage --id $id --file $W/diff.img >/dev/null
    fi
    bs snapshot take --id $id
    if [ $v = read ]; then
      img=$(bs snapshot images --id $id | awk '{print $3}')
      fio --name=r --ioengine=nbd --uri="$img" --rw=read --bs=1M --iodepth=8 --size=${SZ}M --runtime=4 --time_based --output=/dev/null >/dev/null 2>&1
      fio --name=r4 --ioengine=nbd --uri="$img" --rw=randread --bs=4k --iodepth=8 --size=${SZ}M --runtime=${RR:-4} --time_based --output=/dev/null >/dev/null 2>&1
    fi
    s=$(pass)
    bs snapshot destroy --id $id; rm -f $W/diff.img
    echo "round $r $([ "${PRELUDES:-plain}" = plain ] || echo "$v ")base $b first-pass $s ratio $(echo "scale=3; $s/$b" | bc)"
  done
done
