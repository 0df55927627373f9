#!/usr/bin/env bash
# Tracker attached against no tracker, 1 MiB (or 4 KiB random) writes, one daemon, a 1 GiB device on
# /dev/shm (docs/benchmarks-log.md, "The fourteenth session"). Per round both states, the order swapped
# every round, each pass time-based (T seconds, 1 s ramp) so no pass is shorter than the noise.
#   R=8 T=5 bench/probes/tracker-ab.sh        BS=4k for random 4 KiB writes; OPTS for JVM properties,
#   ARGS for daemon flags; DIR=/var/tmp/rt for the root disk
# SNAP=1: the second state is a snapshot taken (onto written storage) whose chunks were all copied by
# one untimed pass: the harness's "2nd pass" against no tracker.
set -uo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}; W=${DIR:-/dev/shm/rt}; mkdir -p $W; D=$W/disk.img
[ -f $D ] || { truncate -s 1G $D; fio --name=fill --filename=$D --rw=write --bs=1M --size=1G --ioengine=psync --output=/dev/null >/dev/null; }
trap 'kill ${BP:-} 2>/dev/null; wait; rm -rf $W' EXIT
. "$ROOT/bench/probes/blksnapd.sh"
start_blksnapd ${ARGS:-}
BS=${BS:-1M}
if [ "$BS" = 1M ]; then RW=write; F='.jobs[0].write.bw_bytes/1048576|floor'; else RW=randwrite; F='.jobs[0].write.iops|floor'; fi
job() {
  sync -f $W   # on a disk, write back what the pass before left dirty (nothing to do on tmpfs)
  fio --name=j --ioengine=nbd --uri="$U" --rw=$RW --bs=$BS --iodepth=8 --size=1G --time_based --runtime=${T:-5} \
    --ramp_time=1 --norandommap --randrepeat=0 --output-format=json --output=$W/j.json >/dev/null 2>&1
  jq -r "$F" $W/j.json
}
track() {
  [ "${SNAP:-0}" = 1 ] && untrack   # the previous round's snapshot
  id=$(bs snapshot create --device disk0)
  if [ "${SNAP:-0}" = 1 ]; then
    rm -f $W/diff.img; dd if=/dev/zero of=$W/diff.img bs=1M count=1280 conv=fsync status=none
    bs snapshot append-storage --id $id --file $W/diff.img >/dev/null; bs snapshot take --id $id
    fio --name=p1 --ioengine=nbd --uri="$U" --rw=write --bs=1M --iodepth=8 --size=1G --output=/dev/null >/dev/null 2>&1
  else
    bs snapshot destroy --id $id
  fi
}
untrack() {
  if [ -n "${id:-}" ] && [ "${SNAP:-0}" = 1 ]; then bs snapshot destroy --id $id >/dev/null 2>&1; rm -f $W/diff.img; id=""; fi
  bs tracker remove --device disk0 >/dev/null 2>&1 || true
}
fio --name=w --ioengine=nbd --uri="$U" --rw=write --bs=1M --iodepth=8 --runtime=2 --time_based --output=/dev/null >/dev/null 2>&1
for r in $(seq ${R:-8}); do
  if [ $((r % 2)) = 1 ]; then untrack; b=$(job); track; t=$(job); else track; t=$(job); untrack; b=$(job); fi
  echo "round $r none $b tracked $t ratio $(echo "scale=3; $t/$b" | bc)"
done
