#!/usr/bin/env bash
# Random 4 KiB writes (QD32) on a tracked sparse device on the root disk, with a given checkpoint
# interval: does each checkpoint's new epoch (every region's first write waits for a journal sync
# again) cost random writers? (docs/benchmarks-log.md, "The fifteenth session")
#   CI=5 T=30 SZ=64G bench/probes/checkpoint-burst.sh      against CI=3600; DIR, ARGS as elsewhere
set -uo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}; W=${DIR:-/var/tmp/ck}; mkdir -p $W; D=$W/disk.img
trap 'kill ${BP:-} 2>/dev/null; wait; rm -rf $W' EXIT
truncate -s ${SZ:-64G} $D
. "$ROOT/bench/probes/blksnapd.sh"
start_blksnapd --checkpoint-interval ${CI:-60} ${ARGS:-}
id=$(bs snapshot create --device disk0); bs snapshot destroy --id $id   # attaches the tracker
fio --name=j --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k --iodepth=32 \
  --time_based --runtime=${T:-30} --ramp_time=1 --norandommap --randrepeat=0 --output-format=json --output=$W/j.json >/dev/null 2>&1
jq -r '.jobs[0].write | "checkpoint-interval '"${CI:-60}"' s: \(.iops|floor) IOPS, p50 \(.clat_ns.percentile["50.000000"]/1000|floor) us, p99.9 \(.clat_ns.percentile["99.900000"]/1000|floor) us, max \(.clat_ns.max/1000|floor) us"' $W/j.json
