#!/usr/bin/env bash
# blksnap for Java — backup benchmark (issue 11): our `blksnap backup` against restic and borg on
# the same bytes in /dev/shm, side by side in one run. See docs/BENCHMARKS.md ("Backup").
#
#   bench/backup.sh [--size SIZE] [--s3] [--agent auto|daemon|off]
#   (default 4G; the device: half random, half text; --agent: where our backups run, default auto:
#   the daemon's resident agent for the directory repository, this process for S3)
#
# --s3: also our backup, incremental and restore into s3://bench/ours on s3proxy (started here on
# /dev/shm, the jar the build copies to target/s3proxy), beside the directory repository, same run.
#
# Steps: full backup of each tool; 1 % of the device's 64 KiB blocks rewritten with random data
# through the NBD export; incremental backup of each tool; restore of each tool (checked with cmp);
# nbdcopy of the export to a file as the upper bound of reading. restic reads the device file with
# `backup --stdin`, borg with `create -C lz4 REPO::A -` (both reread everything); ours reads the
# snapshot image over NBD, and for the incremental only the blocks the CBT map marks.
# The daemon's data directory (tracking state, difference storage) is on the root disk ($BENCH_DISK_DIR or
# /var/tmp), as an installed daemon's /var/lib/blksnap; the device and the three repositories in /dev/shm.
# Output: a table on stdout and in bench/results/backup-<timestamp>/table.md.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH   # the distribution python3 has the nbd module nbdsh needs
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIZE=4G
S3=0
AGENT=auto
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE=$2; shift ;;
    --s3) S3=1 ;;
    --agent) AGENT=$2; shift ;;
    *) echo "usage: bench/backup.sh [--size SIZE] [--s3] [--agent auto|daemon|off]" >&2; exit 64 ;;
  esac
  shift
done
for t in restic borg nbdcopy nbdsh python3; do
  command -v $t >/dev/null || { echo "bench/backup.sh: needs $t (apt-get install -y restic borgbackup libnbd-bin python3-libnbd)" >&2; exit 69; }
done
OUT="$ROOT/bench/results/backup-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
W=$(mktemp -d /dev/shm/blksnap-backup-bench.XXXXXX)
DAEMON=""
DATA=""
S3PID=""
cleanup() {
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
  [ -n "$S3PID" ] && kill "$S3PID" 2>/dev/null && wait "$S3PID" 2>/dev/null || true
  rm -rf "$W" ${DATA:+"$DATA"}
}
trap cleanup EXIT
export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
BYTES=$(numfmt --from=iec "$SIZE")

echo "== data: $SIZE, half random, half text" >&2
python3 "$ROOT/bench/backup-data.py" "$W/disk0.img" "$BYTES"
# A fresh virtual machine backs its memory lazily: the first write to a guest page costs a fault in
# the host (seen here as a 4 GiB restore into /dev/shm taking 20 s in a new VM and 8.5 s later).
# Whoever runs first would pay it; so the memory the run will use is touched once before anything is
# timed (a file as large as the device and the three repositories, written and removed).
# The pages a step frees are handed back to the host after a while, so the touch is repeated right
# before each step that writes new data (the full backups, the restores): every tool then writes
# into memory that was touched a moment before, whichever order they run in.
warm() { dd if=/dev/zero of="$W/warm" bs=1M count=$(( BYTES / 1048576 )) status=none; rm -f "$W/warm"; }
echo "== touching the memory the run will use" >&2
dd if=/dev/zero of="$W/warm" bs=1M count=$(( BYTES * 5 / 2 / 1048576 )) status=none; rm -f "$W/warm"
# The daemon's data directory (its tracking state and the backups' difference storage) lives on the
# root disk, as an installed daemon's /var/lib/blksnap does; the device and the repositories in memory.
DATA=$(mktemp -d "${BENCH_DISK_DIR:-/var/tmp}/blksnap-backup-bench-data.XXXXXX")
(cd "$ROOT" && exec bin/blksnapd --data-dir "$DATA" --listen none --device "disk0=$W/disk0.img" >"$OUT/daemon.log" 2>&1) &
DAEMON=$!
export BLKSNAP_CONTROL="$DATA/control.sock"
for _ in $(seq 100); do [ -S "$BLKSNAP_CONTROL" ] && break; sleep 0.2; done
URI="nbd+unix:///disk0?socket=$DATA/nbd.sock"
BK="$ROOT/bin/blksnap"

declare -A T
now() { date +%s.%N; }
timed() { # timed KEY command...  (stdout of the command to $OUT/KEY.out)
  local key=$1; shift
  local s; s=$(now)
  "$@" >"$OUT/$key.out" 2>"$OUT/$key.err"
  T[$key]=$(echo "$(now) - $s" | bc)
  echo "$key ${T[$key]} s" >&2
}
ours() { "$BK" --json backup --agent "$AGENT" --repo "$W/ours" --device disk0; }
if [ "$S3" = 1 ]; then
  [ -f "$ROOT/target/s3proxy/s3proxy.jar" ] || (cd "$ROOT" && mvn -B -q -ntp generate-test-resources >&2)
  S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$W/s3/bench"
  printf '%s\n' "s3proxy.endpoint=http://127.0.0.1:$S3PORT" "s3proxy.authorization=aws-v2-or-v4" \
    "s3proxy.identity=bench" "s3proxy.credential=bench-secret" "jclouds.provider=filesystem" \
    "jclouds.filesystem.basedir=$W/s3" >"$W/s3proxy.conf"
  "$(cd "$ROOT" && bin/jdk25)/bin/java" -Xmx512m -jar "$ROOT/target/s3proxy/s3proxy.jar" --properties "$W/s3proxy.conf" \
    >"$OUT/s3proxy.log" 2>&1 &
  S3PID=$!
  for _ in $(seq 600); do (echo >/dev/tcp/127.0.0.1/$S3PORT) 2>/dev/null && break; sleep 0.1; done
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
  export BLKSNAP_S3_ENDPOINT="http://127.0.0.1:$S3PORT"
fi
ours_s3() { "$BK" --json backup --repo s3://bench/ours --device disk0; }

restic init -q -r "$W/restic" >/dev/null
borg init -e repokey "$W/borg" >/dev/null 2>&1
"$BK" version >/dev/null # builds and warms the CDS archive

timed nbdcopy nbdcopy "$URI" "$W/nbdcopy.img"; rm -f "$W/nbdcopy.img"
warm; timed ours_full ours
[ "$S3" = 1 ] && { warm; timed ours_s3_full ours_s3; }
warm; timed restic_full sh -c "restic -q -r '$W/restic' backup --stdin --stdin-filename disk0.img < '$W/disk0.img'"
warm; timed borg_full sh -c "borg create -C lz4 '$W/borg::full' - < '$W/disk0.img'"
S_OURS_FULL=$(du -sb "$W/ours" | cut -f1); S_RESTIC_FULL=$(du -sb "$W/restic" | cut -f1); S_BORG_FULL=$(du -sb "$W/borg" | cut -f1)

echo "== 1 % of the 64 KiB blocks rewritten at random through the export" >&2
CHANGED=$(nbdsh -u "$URI" -c '
import os, random
blocks = h.get_size() // 65536
picked = random.Random(11).sample(range(blocks), blocks // 100)
for b in picked:
    h.pwrite(os.urandom(65536), b * 65536)
h.flush()
print(len(picked) * 65536)
')
timed ours_inc ours
[ "$S3" = 1 ] && timed ours_s3_inc ours_s3
timed restic_inc sh -c "restic -q -r '$W/restic' backup --stdin --stdin-filename disk0.img < '$W/disk0.img'"
timed borg_inc sh -c "borg create -C lz4 '$W/borg::inc' - < '$W/disk0.img'"
S_OURS_INC=$(( $(du -sb "$W/ours" | cut -f1) - S_OURS_FULL )); S_RESTIC_INC=$(( $(du -sb "$W/restic" | cut -f1) - S_RESTIC_FULL ))
S_BORG_INC=$(( $(du -sb "$W/borg" | cut -f1) - S_BORG_FULL ))
# json FILE EXPR: EXPR over the file's JSON (j); secs(o) lists an object of xxxSeconds as "xxx s, ..."
json() {
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))
secs=lambda o: ", ".join(f"{k[:-7]} {v:.2f}" for k, v in o.items())
print(eval(sys.argv[2]))' "$1" "$2"
}
INC_ID=$(json "$OUT/ours_inc.out" 'j["points"][0]["id"]')
READ_INC=$(json "$OUT/ours_inc.out" 'j["points"][0]["bytesRead"]')
INC_TIMES=$(json "$OUT/ours_inc.out" 'secs(j["timings"])')
INC_PHASES=$(json "$OUT/ours_inc.out" 'secs(j["points"][0]["phases"])')
FULL_PHASES=$(json "$OUT/ours_full.out" 'secs(j["points"][0]["phases"])')
NEW_INC=$(json "$OUT/ours_inc.out" 'j["points"][0]["newBytes"]')

# Each restore is compared and removed before the next: three 4 GiB restores beside the device and
# three repositories would not fit in the memory of the machine /dev/shm lives in.
restored() { cmp "$W/r-$1.img" "$W/disk0.img" || { echo "restore of $1 differs" >&2; exit 1; }; rm -f "$W/r-$1.img"; }
warm; timed ours_restore "$BK" restore --repo "$W/ours" --point "$INC_ID" --to "$W/r-ours.img"; restored ours
if [ "$S3" = 1 ]; then
  S3_INC_ID=$(json "$OUT/ours_s3_inc.out" 'j["points"][0]["id"]')
  warm; timed ours_s3_restore "$BK" restore --repo s3://bench/ours --point "$S3_INC_ID" --to "$W/r-ours-s3.img"; restored ours-s3
fi
warm; timed restic_restore sh -c "restic -q -r '$W/restic' dump latest disk0.img > '$W/r-restic.img'"; restored restic
warm; timed borg_restore sh -c "borg extract --stdout '$W/borg::inc' > '$W/r-borg.img'"; restored borg
timed jvm_version "$BK" version

ratio() { echo "scale=2; $1 / $2" | bc; }
{
  echo "| $SIZE, half random half text, /dev/shm | ours | restic $(restic version | cut -d' ' -f2) | borg $(borg --version | cut -d' ' -f2) (lz4) |"
  echo "|---|---|---|---|"
  echo "| full backup, s | ${T[ours_full]} | ${T[restic_full]} ($(ratio "${T[restic_full]}" "${T[ours_full]}")x ours) | ${T[borg_full]} ($(ratio "${T[borg_full]}" "${T[ours_full]}")x ours) |"
  echo "| repository after full, bytes | $S_OURS_FULL | $S_RESTIC_FULL | $S_BORG_FULL |"
  echo "| incremental (1 % of 64 KiB blocks, $CHANGED bytes), s | ${T[ours_inc]} | ${T[restic_inc]} ($(ratio "${T[restic_inc]}" "${T[ours_inc]}")x ours) | ${T[borg_inc]} ($(ratio "${T[borg_inc]}" "${T[ours_inc]}")x ours) |"
  echo "| incremental: bytes read from the device | $READ_INC | $BYTES | $BYTES |"
  echo "| incremental: bytes added to the repository | $S_OURS_INC (newBytes $NEW_INC) | $S_RESTIC_INC | $S_BORG_INC |"
  echo "| restore, s | ${T[ours_restore]} | ${T[restic_restore]} ($(ratio "${T[restic_restore]}" "${T[ours_restore]}")x ours) | ${T[borg_restore]} |"
  echo "| upper bound: nbdcopy of the export to a file, s | ${T[nbdcopy]} | | |"
  echo "| ours: where the incremental's time went (s) | $INC_TIMES | | |"
  echo "| ours: the incremental point's phases (s; nbd, hash, store summed over threads) | $INC_PHASES | | |"
  echo "| ours: the full point's phases (s) | $FULL_PHASES | | |"
  echo "| floor of any blksnap call: JVM start + one control call (blksnap version), s | ${T[jvm_version]} | | |"
  if [ "$S3" = 1 ]; then
    echo
    echo "| $SIZE, same bytes, same run | ours, directory on /dev/shm | ours, s3proxy (filesystem backend on /dev/shm) |"
    echo "|---|---|---|"
    echo "| full backup, s | ${T[ours_full]} ($(echo "scale=0; $BYTES / ${T[ours_full]} / 1048576" | bc) MiB/s) | ${T[ours_s3_full]} ($(echo "scale=0; $BYTES / ${T[ours_s3_full]} / 1048576" | bc) MiB/s) |"
    echo "| incremental, s | ${T[ours_inc]} | ${T[ours_s3_inc]} |"
    echo "| restore of the incremental, s | ${T[ours_restore]} ($(echo "scale=0; $BYTES / ${T[ours_restore]} / 1048576" | bc) MiB/s) | ${T[ours_s3_restore]} ($(echo "scale=0; $BYTES / ${T[ours_s3_restore]} / 1048576" | bc) MiB/s) |"
  fi
} | tee "$OUT/table.md"
