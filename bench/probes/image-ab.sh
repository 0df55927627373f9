#!/usr/bin/env bash
# Image sequential reads against live reads of the same device, alternated, one daemon, a device of
# SZ MiB on the root disk by default (docs/benchmarks-log.md, "The eighteenth session"). First with the
# snapshot's chunks not copied (cold), then after a 1 MiB pass over the whole device copied them all.
# Each read is 1 MiB QD8 looping over the device for T s; the filesystem is written back before each.
#   R=5 T=4 SZ=2048 bench/probes/image-ab.sh     DIR=/dev/shm/ia for tmpfs; OPTS, ARGS as first-pass.sh
set -uo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}; W=${DIR:-/var/tmp/ia}; SZ=${SZ:-2048}; T=${T:-4}
. "$ROOT/bench/probes/blksnapd.sh"
probe_device $SZ
start_blksnapd ${ARGS:-}
rd() {
  sync -f $W
  fio --name=r --ioengine=nbd --uri="$1" --rw=read --bs=1M --iodepth=8 --size=${SZ}M --runtime=$T --time_based \
    --output-format=json --output=$W/r.json >/dev/null 2>&1
  jq -r '.jobs[0].read.bw_bytes/1048576|floor' $W/r.json
}
rounds() {
  for r in $(seq ${R:-5}); do
    l=$(rd "$U"); i=$(rd "$img")
    echo "$1 round $r live $l image $i ratio $(echo "scale=3; $i/$l" | bc)"
  done
}
id=$(bs snapshot create --device disk0)
dd if=/dev/zero of=$W/diff.img bs=1M count=$((SZ + 256)) conv=fsync status=none
bs snapshot append-storage --id $id --file $W/diff.img >/dev/null; bs snapshot take --id $id
img=$(bs snapshot images --id $id | awk '{print $3}')
rounds cold
fio --name=w --ioengine=nbd --uri="$U" --rw=write --bs=1M --iodepth=8 --size=${SZ}M --output=/dev/null >/dev/null 2>&1
rounds copied
bs snapshot destroy --id $id
