#!/usr/bin/env bash
# blksnap for Java — benchmark harness (project issue #6). See docs/BENCHMARKS.md.
#
#   bench/run.sh [--quick] [--rounds N] [--runtime S] [--size SIZE] [--scn-size SIZE] [--scn-timed S]
#                [--parts peers,scenarios,engine,jmh] [--ours-only] [--medium shm|disk|both] [--out DIR]
#
# --medium: where the devices and the difference storage live: shm (/dev/shm, the default), disk (a
# directory on the root filesystem, $BENCH_DISK_DIR or /var/tmp: ext4 on virtio here), or both; each
# medium gets its own tables, each against its own peers (sections peers-disk, scenarios-disk).
#
# Parts (default: peers,scenarios,engine; add persist, scale and jmh explicitly):
#   peers      fio (ioengine=nbd) and nbdcopy against blksnapd, nbdkit file, qemu-nbd (default and
#              --cache=none --aio=native), same backing file in /dev/shm, Unix sockets, servers
#              alternating within each round; fio psync on the raw file as the physical limit.
#   scenarios  upstream tests/fio + perf-cow style: no tracker, tracker attached, snapshot taken
#              (first / second 1 MiB pass, fresh random 4 KiB writes), image reads cold / after COW;
#              passes that must touch each block once (the first copy-on-write pass, fresh random
#              writes, and their bases) are one pass; the others loop over the device for
#              --scn-timed seconds (default 4, after 1 s of ramp), so that no ratio rests on a
#              0.4 s pass; for blksnapd and for QEMU (qemu-storage-daemon: copy-before-write + snapshot-access).
#              The difference storage (ours) and the copy-before-write target (QEMU's) are written
#              once before the snapshot, so the passes measure the engines, not the first touch of
#              new pages; one more first pass per round on freshly allocated storage, labelled
#              "fresh storage", shows what a first snapshot on new storage costs.
#   persist    tracking with persistent CBT (journal + checkpoints, state on /dev/shm and on the root
#              disk) against tracking in memory only (--no-persist), same run, alternated; and the
#              time a start takes with the saved state of a 10 TiB tracked device (clean and after kill -9).
#   engine     take latency (1/4/16 sparse 1 TiB devices, idle / under writes) and heap per snapshot
#              (1 GiB, 1 TiB, 10 TiB), in-process (org.blksnap.bench.EngineProbe, bench profile).
#   scale      cost curves, in-process: take latency and heap for 1/16/64 devices of 1 TiB and for one
#              device of 1 GiB to 64 TiB; first-pass copy-on-write with 1/4/16 writers and image reads
#              with 1/4/16 readers, each thread on its own device of one snapshot (/dev/shm); then all
#              of it again with persistent change tracking, the state on the root disk (-persist), and
#              the device-count curve with every map changed all over (-persist-written).
#   jmh        the JMH hot-path suite (bench/jmh.sh), short settings.
#
# Output: bench/results/<timestamp>/{raw.tsv,table.md,*.json,logs}; bench/results/latest -> it.
# Numbers on a shared 2-vCPU VM are noisy: compare the ratios (same run, medians over rounds).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
ROUNDS=3
RUNTIME=10
SIZE=2G          # backing file of the peer comparison (fully written)
SCN_SIZE=1G      # device of the snapshot scenarios (fully written)
RND_SIZE=128M    # region of the random 4 KiB write pass (upstream random_write_4k: 128m)
SCN_TIMED=4      # seconds of each scenario pass that loops over the device (--scn-timed)
WARM=4G          # /dev/shm written once and freed before measuring (see warm_memory)
PARTS=peers,scenarios,engine
OUT=""
QUICK=0
MEDIA=shm        # --medium
OURS_ONLY=0      # --ours-only: scenarios without the QEMU peer (A/B of our own builds, half the time)
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; ROUNDS=1; RUNTIME=3; SIZE=512M; SCN_SIZE=256M; RND_SIZE=32M; SCN_TIMED=2 ;;
    --rounds) ROUNDS=$2; shift ;;
    --runtime) RUNTIME=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --scn-size) SCN_SIZE=$2; shift ;;
    --rnd-size) RND_SIZE=$2; shift ;;
    --scn-timed) SCN_TIMED=$2; shift ;;
    --warm) WARM=$2; shift ;;
    --parts) PARTS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --ours-only) OURS_ONLY=1 ;;
    --medium) case "$2" in shm) MEDIA=shm ;; disk) MEDIA=disk ;; both) MEDIA="shm disk" ;;
                *) echo "run.sh: --medium must be shm, disk or both" >&2; exit 64 ;; esac; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done
has_part() { [[ ",$PARTS," == *",$1,"* ]]; }

# ---- tools ---------------------------------------------------------------------------------------
need() { command -v "$1" >/dev/null || { echo "run.sh: '$1' not found: $2" >&2; exit 69; }; }
need fio "apt-get install -y fio (needs ioengine=nbd: fio >= 3.19)"
need nbdkit "apt-get install -y nbdkit"
need qemu-nbd "apt-get install -y qemu-utils"
need nbdcopy "apt-get install -y libnbd-bin"
need jq "apt-get install -y jq"
need python3 "apt-get install -y python3"
if has_part scenarios && [ "$OURS_ONLY" = 0 ] && ! command -v qemu-storage-daemon >/dev/null; then
  echo "run.sh: qemu-storage-daemon is missing (QEMU's copy-before-write peer); installing qemu-system-common ..." >&2
  if ! apt-get install -y qemu-system-common >/dev/null 2>&1; then
    echo "run.sh: could not install it; run 'apt-get install -y qemu-system-common' as root, or use --parts peers,engine" >&2
    exit 69
  fi
fi
JAVA_HOME="$("$ROOT/bin/jdk25")"; export JAVA_HOME
echo "run.sh: building (mvn -q -DskipTests package) ..." >&2
(cd "$ROOT" && mvn -B -q -o -DskipTests package >/dev/null 2>&1 || mvn -B -q -DskipTests package >&2)
# an up-to-date build leaves class files older than pom.xml; keep bin/blksnapd from rebuilding at each start
touch "$ROOT/target/classes/org/blksnap/daemon/Blksnapd.class"

# ---- work area -----------------------------------------------------------------------------------
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$BENCH/results/$STAMP}
mkdir -p "$OUT"
ln -sfn "$OUT" "$BENCH/results/latest"
W=/dev/shm/blksnap-bench.$$
mkdir -p "$W"
WDISK=${BENCH_DISK_DIR:-/var/tmp}/blksnap-bench.$$
D=$W             # data files of the medium being measured (set_medium)
SFX=""           # section suffix of the medium being measured
set_medium() {
  if [ "$1" = disk ]; then mkdir -p "$WDISK"; D=$WDISK; SFX=-disk; else D=$W; SFX=""; fi
  echo "== medium: $1 ($D)" >&2
}
RAW="$OUT/raw.tsv"
: > "$RAW"
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for f in "$W"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  sleep 0.5
  rm -rf "$W" "$WDISK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(nproc) vCPU, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -r)"
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git: $(cd "$ROOT" && git rev-parse --short HEAD) ($(cd "$ROOT" && git rev-parse --abbrev-ref HEAD))"
  echo "java: $("$JAVA_HOME/bin/java" -version 2>&1 | head -1)"
  echo "fio: $(fio --version); nbdkit: $(nbdkit --version | head -1); qemu: $(qemu-nbd --version | head -1)"
  echo "settings: rounds=$ROUNDS runtime=${RUNTIME}s size=$SIZE scn-size=$SCN_SIZE rnd-size=$RND_SIZE scn-timed=${SCN_TIMED}s quick=$QUICK"
} > "$OUT/env.txt"
cat "$OUT/env.txt" >&2

wait_sock() {  # wait_sock PATH [SECONDS]
  local i
  for ((i = 0; i < ${2:-60} * 10; i++)); do [ -S "$1" ] && return 0; sleep 0.1; done
  echo "run.sh: socket $1 did not appear" >&2; return 1
}
fill() {  # fill FILE SIZE: fully written, so that no server shortcuts reads via holes
  rm -f "$1"; truncate -s "$2" "$1"
  fio --name=fill --filename="$1" --rw=write --bs=1M --size="$2" --ioengine=psync --output=/dev/null >/dev/null
}
# In this VM (Firecracker) the first touch of guest memory that was never used is slow: writing a
# sparse tmpfs file runs at ~0.4-0.5 GB/s on fresh pages and ~3-8 GB/s on recycled ones. Copy-on-write
# (ours and QEMU's) writes new tmpfs pages, so without this the COW numbers measure the hypervisor.
warm_memory() {
  [ "$WARM" = 0 ] && return 0
  echo "== warming $WARM of /dev/shm (first-touch cost of guest memory)" >&2
  dd if=/dev/zero of="$W/warm" bs=1M count=$(($(numfmt --from=iec "$WARM") / 1048576)) status=none || true
  rm -f "$W/warm"
}
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RAW"; }  # section key server round value unit

# fio_val JSON-FILE RW BS: MiB/s for bs >= 64k, IOPS otherwise
fio_val() {
  local dir=read
  case "$2" in write|randwrite|rw|randrw) dir=write ;; esac
  if [ "$3" = 4k ]; then jq -r ".jobs[0].$dir.iops" "$1"; else jq -r ".jobs[0].$dir.bw_bytes / 1048576" "$1"; fi
}
# fio_job LABEL RW BS QD MODE TARGET-ARGS...   MODE: time (RUNTIME s + 1 s ramp), SIZE (one pass) or
# loop:SIZE (over the first SIZE again and again for SCN_TIMED s + 1 s ramp)
# prints the value; keeps the json in $OUT/fio/
fio_job() {
  local label=$1 rw=$2 bs=$3 qd=$4 mode=$5; shift 5
  local js="$OUT/fio/$label.json"; mkdir -p "$OUT/fio"
  local run=(--runtime="$RUNTIME" --ramp_time=1 --time_based --norandommap --randrepeat=0)
  case "$mode" in
    time) ;;
    loop:*) run=(--size="${mode#loop:}" --runtime="$SCN_TIMED" --ramp_time=1 --time_based --norandommap --randrepeat=0) ;;
    *) run=(--size="$mode" --randrepeat=0) ;;
  esac
  if ! fio --name="$label" "$@" --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs=1 "${run[@]}" \
      --output-format=json --output="$js" >/dev/null 2>"$OUT/fio/$label.err"; then
    echo "run.sh: fio $label failed: $(tail -2 "$OUT/fio/$label.err")" >&2; echo nan; return 0
  fi
  fio_val "$js" "$rw" "$bs"
}
nbd_uri() { echo "nbd+unix:///$2?socket=$1"; }  # nbd_uri SOCKET EXPORT

# ---- our daemon ----------------------------------------------------------------------------------
start_blksnapd() {  # start_blksnapd TAG DEVICE-FILE [DAEMON-ARGS...] -> socket $W/TAG.sock, control $W/TAG.d/control.sock
  local tag=$1 dev=$2; shift 2
  rm -rf "$W/$tag.d"
  "$ROOT/bin/blksnapd" --data-dir "$W/$tag.d" --device "disk0=$dev" --listen none --socket "$W/$tag.sock" \
    --log-level WARN "$@" >"$OUT/$tag.log" 2>&1 &
  PIDS+=($!); echo $! > "$W/$tag.jpid"; echo "$dev" > "$W/$tag.dev"
  wait_sock "$W/$tag.sock"
  wait_sock "$W/$tag.d/control.sock"
}
ensure_blksnapd() {  # restarts a daemon that went away (e.g. killed from outside), and says so
  if ! kill -0 "$(cat "$W/$1.jpid")" 2>/dev/null; then
    echo "run.sh: blksnapd '$1' is gone (see $OUT/$1.log); restarting it" >&2
    echo "note: blksnapd '$1' restarted at $(date +%T)" >> "$OUT/env.txt"
    rm -f "$W/$1.sock"
    start_blksnapd "$1" "$(cat "$W/$1.dev")"
  fi
}
stop_blksnapd() { kill "$(cat "$W/$1.jpid")" 2>/dev/null || true; wait "$(cat "$W/$1.jpid")" 2>/dev/null || true; }
bsnap() { BLKSNAP_CONTROL="$W/$1.d/control.sock" "$ROOT/bin/blksnap" "${@:2}"; }

warm_memory

# =================================================================================================
# Part 1: peers
# =================================================================================================
PEER_JOBS="read:1M:8 write:1M:8 randread:4k:1 randread:4k:32 randwrite:4k:1 randwrite:4k:32"
# Every server starts each job from the same page-cache state of the backing file. On /dev/shm the
# pages are the file. On the disk they are read in before each job (a sequential read, ~0.4 s for
# 2 GiB), because the state depends otherwise on who ran before: fio's psync job drops the file's
# cached pages when it starts (fio's invalidate=1 default; it now runs with --invalidate=0), and
# qemu-nbd --cache=none writes with O_DIRECT, which drops the pages it writes. Without this the first
# server after either read from the virtio disk and the ones after it from memory. The file is also
# written back first (sync): the dirty pages a write job leaves are otherwise written back during
# the next server's turn, and 4 KiB writes into pages under writeback ran 15x slower.
page_cache_in() {  # page_cache_in FILE: on the disk medium, FILE clean and all of it in the page cache
  [ "$SFX" = -disk ] || return 0
  sync "$1"
  dd if="$1" of=/dev/null bs=1M status=none
}
page_cache_out() {  # page_cache_out FILE: write back and drop FILE's cached pages (reads reach the disk)
  sync "$1"
  dd if="$1" iflag=nocache count=0 status=none
}
run_peers() {
  rm -f "$W/pk.sock" "$W/pq.sock" "$W/pqn.sock" "$W/ours.sock"   # left by the previous medium
  DISK=$D/disk.img
  echo "== peers: filling $DISK ($SIZE)" >&2
  fill "$DISK" "$SIZE"
  start_blksnapd ours "$DISK"
  nbdkit -U "$W/pk.sock" -P "$W/pk.pid" file "$DISK"
  QOPTS="driver=raw,file.driver=file,file.filename=$DISK,file.locking=off"
  qemu-nbd -k "$W/pq.sock" -t -e 4 --fork --pid-file="$W/pq.pid" --image-opts "$QOPTS"
  qemu-nbd -k "$W/pqn.sock" -t -e 4 --fork --pid-file="$W/pqn.pid" --cache=none --aio=native --image-opts "$QOPTS"
  wait_sock "$W/pk.sock"; wait_sock "$W/pq.sock"; wait_sock "$W/pqn.sock"
  declare -A URI=(
    [blksnapd]="$(nbd_uri "$W/ours.sock" disk0)"
    [nbdkit]="$(nbd_uri "$W/pk.sock" "")"
    [qemu-nbd]="$(nbd_uri "$W/pq.sock" "")"
    [qemu-nbd-nocache]="$(nbd_uri "$W/pqn.sock" "")"
  )
  SERVERS=(blksnapd nbdkit qemu-nbd qemu-nbd-nocache)
  # JIT warm-up of our daemon (not recorded)
  fio_job warmup-w randwrite 4k 32 time --ioengine=nbd --uri="${URI[blksnapd]}" >/dev/null
  fio_job warmup-r read 1M 8 time --ioengine=nbd --uri="${URI[blksnapd]}" >/dev/null
  for ((r = 1; r <= ROUNDS; r++)); do
    n=${#SERVERS[@]}
    order=(); for ((i = 0; i < n; i++)); do order+=("${SERVERS[$(((i + r - 1) % n))]}"); done
    for job in $PEER_JOBS; do
      IFS=: read -r rw bs qd <<<"$job"; key="${rw}_${bs}_qd$qd"
      for s in raw-psync "${order[@]}"; do
        [ "$s" = blksnapd ] && ensure_blksnapd ours
        [ "$s" = raw-psync ] && { [ "$qd" = 1 ] || [ "$bs" = 1M ] || continue; }
        page_cache_in "$DISK"
        if [ "$s" = raw-psync ]; then
          v=$(fio_job "p$SFX$r-$key-$s" "$rw" "$bs" 1 time --filename="$DISK" --ioengine=psync --invalidate=0)
        else
          v=$(fio_job "p$SFX$r-$key-$s" "$rw" "$bs" "$qd" time --ioengine=nbd --uri="${URI[$s]}")
        fi
        record "peers$SFX" "$key" "$s" "$r" "$v" "$([ "$bs" = 4k ] && echo IOPS || echo MiB/s)"
        echo "  round $r $key $s: $v" >&2
      done
    done
    if [ "$SFX" = -disk ]; then
      # The same reads with the file's pages dropped before each server: what a read of data that is
      # not in memory costs (bound by the virtio disk's latency; raw-psync is that limit).
      key=randread_4k_qd1_uncached
      for s in raw-psync "${order[@]}"; do
        [ "$s" = blksnapd ] && ensure_blksnapd ours
        page_cache_out "$DISK"
        if [ "$s" = raw-psync ]; then
          v=$(fio_job "p$SFX$r-$key-$s" randread 4k 1 time --filename="$DISK" --ioengine=psync --invalidate=0)
        else
          v=$(fio_job "p$SFX$r-$key-$s" randread 4k 1 time --ioengine=nbd --uri="${URI[$s]}")
        fi
        record "peers$SFX" "$key" "$s" "$r" "$v" IOPS
        echo "  round $r $key $s: $v" >&2
      done
    fi
    for k in a b; do  # two copies per round (each is short)
      for s in "${order[@]}"; do
        [ "$s" = blksnapd ] && ensure_blksnapd ours
        page_cache_in "$DISK"
        t0=$(date +%s.%N)
        nbdcopy "${URI[$s]}" null: 2>"$OUT/nbdcopy-$s.err" || echo "run.sh: nbdcopy $s failed" >&2
        t1=$(date +%s.%N)
        v=$(python3 -c "print($(stat -c %s "$DISK")/1048576/($t1-$t0))")
        record "peers$SFX" nbdcopy "$s" "$r$k" "$v" MiB/s
        echo "  round $r$k nbdcopy $s: $v MiB/s" >&2
      done
    done
  done
  kill "$(cat "$W/pk.pid")" "$(cat "$W/pq.pid")" "$(cat "$W/pqn.pid")" 2>/dev/null || true
  for f in pk pq pqn; do while kill -0 "$(cat "$W/$f.pid")" 2>/dev/null; do sleep 0.1; done; done
  stop_blksnapd ours
  rm -f "$DISK"
}

# =================================================================================================
# Part 2: blksnap scenarios (ours) and QEMU copy-before-write + snapshot-access (qemu)
# =================================================================================================
# Passes whose meaning is "each block once" are one pass: of SCN_SIZE for the first copy-on-write pass
# (and its base), of RND_SIZE with a random map for fresh random writes (and its base). Every other
# pass loops over the device for SCN_TIMED s (keys ending in -timed): one pass of 1 GiB lasts about
# 0.4 s here, too short for a ratio. Random reads are time-based (RUNTIME). Depth 8 as upstream tests/fio.
scn() {  # scn SERVER ROUND KEY RW BS URI MODE
  local v
  # on the disk, write back what the steps before left dirty, so that it is not written back during this one
  [ "$SFX" = -disk ] && sync -f "$D"
  v=$(fio_job "s$SFX$2-$1-$3" "$4" "$5" 8 "$7" --ioengine=nbd --uri="$6")
  record "scenarios$SFX" "$3" "$1" "$2" "$v" "$([ "$5" = 4k ] && echo IOPS || echo MiB/s)"
  echo "  round $2 $1 $3: $v" >&2
}
scn_warm() {  # untimed 2 s of 1 MiB writes before each round's first measurement (the first job of a
              # round otherwise ran measurably slower on both servers)
  fio --name=warm --ioengine=nbd --uri="$1" --rw=write --bs=1M --iodepth=8 --runtime=2 --time_based \
    --output=/dev/null >/dev/null 2>&1 || true
}
scn_common() {  # scn_common SERVER ROUND DEV-URI PHASE   (PHASE: base or tracked)
  if [ "$4" = base ]; then  # the bases of the first copy-on-write pass and of fresh random writes
    scn "$1" "$2" base-write1M write 1M "$3" "$SCN_SIZE"
    scn "$1" "$2" base-randwrite4k randwrite 4k "$3" "$RND_SIZE"
  fi
  scn "$1" "$2" "$4-write1M-timed" write 1M "$3" "loop:$SCN_SIZE"
  scn "$1" "$2" "$4-randwrite4k-timed" randwrite 4k "$3" "loop:$RND_SIZE"
  if [ "$4" = base ]; then
    scn "$1" "$2" base-read1M-timed read 1M "$3" "loop:$SCN_SIZE"
    scn "$1" "$2" base-randread4k randread 4k "$3" time
  fi
}
scn_snapshot() {  # scn_snapshot SERVER ROUND DEV-URI IMG-URI
  scn "$1" "$2" img-cold-read1M-timed read 1M "$4" "loop:$SCN_SIZE"
  scn "$1" "$2" img-cold-randread4k randread 4k "$4" time
  scn "$1" "$2" snap-write1M-pass1 write 1M "$3" "$SCN_SIZE"
  scn "$1" "$2" snap-write1M-pass2-timed write 1M "$3" "loop:$SCN_SIZE"
  scn "$1" "$2" img-copied-read1M-timed read 1M "$4" "loop:$SCN_SIZE"
  scn "$1" "$2" img-copied-randread4k randread 4k "$4" time
}

ours_round() {  # ours_round ROUND
  local r=$1 id dev img
  ensure_blksnapd so
  dev=$(nbd_uri "$W/so.sock" disk0)
  bsnap so tracker remove --device disk0 >/dev/null 2>&1 || true
  scn_warm "$dev"
  scn_common blksnapd "$r" "$dev" base
  id=$(bsnap so snapshot create --device disk0); bsnap so snapshot destroy --id "$id"
  scn_common blksnapd "$r" "$dev" tracked
  written_storage "$D/so-diff.img" "$SCN_STORAGE"
  id=$(bsnap so snapshot create --device disk0)
  bsnap so snapshot append-storage --id "$id" --file "$D/so-diff.img" >/dev/null
  bsnap so snapshot take --id "$id"
  img=$(bsnap so snapshot images --id "$id" | awk '{print $3}')
  scn_snapshot blksnapd "$r" "$dev" "$img"
  bsnap so status | grep chunks_copied >> "$OUT/so-status.txt" || true
  bsnap so snapshot destroy --id "$id"
  written_storage "$D/so-diff.img" "$SCN_STORAGE"
  id=$(bsnap so snapshot create --device disk0)
  bsnap so snapshot append-storage --id "$id" --file "$D/so-diff.img" >/dev/null
  bsnap so snapshot take --id "$id"
  scn blksnapd "$r" snap-randwrite4k-fresh randwrite 4k "$dev" "$RND_SIZE"
  bsnap so snapshot destroy --id "$id"
  # the first pass again, on storage allocated now (fallocate, pages never touched)
  rm -f "$D/so-diff.img"
  id=$(bsnap so snapshot create --device disk0)
  bsnap so snapshot append-storage --id "$id" --file "$D/so-diff.img" --size "$SCN_STORAGE" >/dev/null
  bsnap so snapshot take --id "$id"
  scn blksnapd "$r" snap-write1M-pass1-freshstorage write 1M "$dev" "$SCN_SIZE"
  bsnap so snapshot destroy --id "$id"
  rm -f "$D/so-diff.img"
}
written_storage() {  # written_storage FILE SIZE: a file whose every page was written once (zeros)
  rm -f "$1"
  dd if=/dev/zero of="$1" bs=1M count=$(($(numfmt --from=iec "$2") / 1048576)) conv=fsync status=none
}

QMP() { python3 "$BENCH/qmp.py" "$W/sq.qmp" "$@"; }
qemu_wait_export_gone() {
  local i
  for ((i = 0; i < 100; i++)); do
    QMP query-block-exports | grep -q "\"$1\"" || return 0; sleep 0.1
  done
  echo "run.sh: QEMU export $1 did not go away" >&2; return 1
}
qemu_round() {  # qemu_round ROUND
  local r=$1 dev img
  dev=$(nbd_uri "$W/sq.sock" dev); img=$(nbd_uri "$W/sq.sock" img)
  scn_warm "$dev"
  scn_common qemu "$r" "$dev" base
  # "tracker attached": a recording dirty bitmap on the node (what libvirt keeps per checkpoint)
  QMP "block-dirty-bitmap-add {\"node\":\"src\",\"name\":\"cbt\",\"granularity\":65536}" >/dev/null
  scn_common qemu "$r" "$dev" tracked
  qemu_snapshot_on
  scn_snapshot qemu "$r" "$dev" "$img"
  qemu_snapshot_off
  qemu_snapshot_on
  scn qemu "$r" snap-randwrite4k-fresh randwrite 4k "$dev" "$RND_SIZE"
  qemu_snapshot_off
  qemu_snapshot_on fresh
  scn qemu "$r" snap-write1M-pass1-freshstorage write 1M "$dev" "$SCN_SIZE"
  qemu_snapshot_off
  QMP 'block-dirty-bitmap-remove {"node":"src","name":"cbt"}' >/dev/null
}
qemu_snapshot_on() {  # qemu_snapshot_on [fresh]: device export moves onto the copy-before-write filter
  if [ "${1:-}" = fresh ]; then rm -f "$D/sq-tgt.img"; truncate -s "$SCN_SIZE" "$D/sq-tgt.img"
  else written_storage "$D/sq-tgt.img" "$SCN_SIZE"; fi
  QMP "blockdev-add {\"driver\":\"file\",\"node-name\":\"tgt\",\"filename\":\"$D/sq-tgt.img\",\"locking\":\"off\"}" \
      'blockdev-add {"driver":"copy-before-write","node-name":"cbw","file":"src","target":"tgt"}' \
      'block-export-del {"id":"edev"}' >/dev/null
  qemu_wait_export_gone edev
  QMP 'block-export-add {"type":"nbd","id":"edev","node-name":"cbw","name":"dev","writable":true}' \
      'blockdev-add {"driver":"snapshot-access","node-name":"acc","file":"cbw"}' \
      'block-export-add {"type":"nbd","id":"eimg","node-name":"acc","name":"img","writable":false}' >/dev/null
}
qemu_snapshot_off() {
  QMP 'block-export-del {"id":"eimg"}' >/dev/null; qemu_wait_export_gone eimg
  QMP 'blockdev-del {"node-name":"acc"}' 'block-export-del {"id":"edev"}' >/dev/null; qemu_wait_export_gone edev
  QMP 'block-export-add {"type":"nbd","id":"edev","node-name":"src","name":"dev","writable":true}' \
      'blockdev-del {"node-name":"cbw"}' 'blockdev-del {"node-name":"tgt"}' >/dev/null
  rm -f "$D/sq-tgt.img"
}

run_scenarios() {
  rm -f "$W/so.sock" "$W/sq.sock" "$W/sq.qmp"   # left by the previous medium
  SDEV=$D/sdev.img
  # diff storage: the whole device may be copied on the first pass; plus room
  SCN_STORAGE=$(($(numfmt --from=iec "$SCN_SIZE") / 1048576 + 256))M
  echo "== scenarios: filling $SDEV ($SCN_SIZE)" >&2
  fill "$SDEV" "$SCN_SIZE"
  start_blksnapd so "$SDEV"
  [ "$OURS_ONLY" = 1 ] || qemu-storage-daemon --blockdev "driver=file,node-name=src,filename=$SDEV,locking=off" \
    --nbd-server "addr.type=unix,addr.path=$W/sq.sock" \
    --export type=nbd,id=edev,node-name=src,name=dev,writable=on \
    --chardev "socket,id=qmp0,path=$W/sq.qmp,server=on,wait=off" --monitor chardev=qmp0 \
    --pidfile "$W/sq.pid" --daemonize
  [ "$OURS_ONLY" = 1 ] || wait_sock "$W/sq.sock"
  fio_job warmup-so randwrite 4k 32 time --ioengine=nbd --uri="$(nbd_uri "$W/so.sock" disk0)" >/dev/null
  for ((r = 1; r <= ROUNDS; r++)); do
    if [ "$OURS_ONLY" = 1 ]; then ours_round "$r"
    elif ((r % 2)); then ours_round "$r"; qemu_round "$r"; else qemu_round "$r"; ours_round "$r"; fi
  done
  if [ "$OURS_ONLY" = 0 ]; then
    kill "$(cat "$W/sq.pid")" 2>/dev/null || true
    while kill -0 "$(cat "$W/sq.pid")" 2>/dev/null; do sleep 0.1; done
  fi
  stop_blksnapd so
  rm -f "$SDEV"
}

for medium in $MEDIA; do
  set_medium "$medium"
  if has_part peers; then run_peers; fi
  if has_part scenarios; then run_scenarios; fi
  [ "$medium" = disk ] && rm -rf "$WDISK"
done

# =================================================================================================
# Part 2b: persistent change tracking (issue 10): journal + checkpoints against memory only
# =================================================================================================
# Three daemons on three copies of one filled device, each with a tracker attached (snapshot create +
# destroy): 'mem' runs --no-persist, 'pshm' keeps its state in its data dir on /dev/shm, 'pdisk' in a
# data dir on the root filesystem (where fsync costs what a disk costs). Jobs alternate between them
# within each round, in a rotating order.
PERSIST_JOBS="randwrite:4k:1 randwrite:4k:32 write:1M:8"
PDISK_BASE=${PDISK_BASE:-/var/tmp}
if has_part persist; then
  echo "== persist: filling 3 x $SCN_SIZE" >&2
  fill "$W/pm.img" "$SCN_SIZE"; cp "$W/pm.img" "$W/ps.img"; cp "$W/pm.img" "$W/pd.img"
  PD_DIR=$(mktemp -d "$PDISK_BASE/blksnap-bench-state.XXXXXX")
  start_blksnapd mem "$W/pm.img" --no-persist
  start_blksnapd pshm "$W/ps.img"
  # pdisk: data dir on the root filesystem; the socket stays in $W
  rm -rf "$PD_DIR"; mkdir -p "$PD_DIR"
  "$ROOT/bin/blksnapd" --data-dir "$PD_DIR/d" --device "disk0=$W/pd.img" --listen none --socket "$W/pdisk.sock" \
    --log-level WARN >"$OUT/pdisk.log" 2>&1 &
  PIDS+=($!); echo $! > "$W/pdisk.jpid"
  wait_sock "$W/pdisk.sock"; wait_sock "$PD_DIR/d/control.sock"
  pctl() { case $1 in pdisk) BLKSNAP_CONTROL="$PD_DIR/d/control.sock" "$ROOT/bin/blksnap" "${@:2}" ;; *) bsnap "$@" ;; esac; }
  for t in mem pshm pdisk; do
    id=$(pctl $t snapshot create --device disk0); pctl $t snapshot destroy --id "$id"
    fio_job "warmup-$t" randwrite 4k 32 time --ioengine=nbd --uri="$(nbd_uri "$W/$t.sock" disk0)" >/dev/null
  done
  PT=(mem pshm pdisk)
  for ((r = 1; r <= ROUNDS; r++)); do
    order=(); for ((i = 0; i < 3; i++)); do order+=("${PT[$(((i + r - 1) % 3))]}"); done
    for job in $PERSIST_JOBS; do
      IFS=: read -r rw bs qd <<<"$job"; key="${rw}_${bs}_qd$qd"
      for t in "${order[@]}"; do
        v=$(fio_job "pp$r-$key-$t" "$rw" "$bs" "$qd" time --ioengine=nbd --uri="$(nbd_uri "$W/$t.sock" disk0)")
        record persist "$key" "$t" "$r" "$v" "$([ "$bs" = 4k ] && echo IOPS || echo MiB/s)"
        echo "  round $r $key $t: $v" >&2
      done
    done
  done
  for t in mem pshm pdisk; do kill "$(cat "$W/$t.jpid")" 2>/dev/null || true; wait "$(cat "$W/$t.jpid")" 2>/dev/null || true; done
  rm -rf "$PD_DIR" "$W/pm.img" "$W/ps.img" "$W/pd.img"

  # Start time with the state of a 10 TiB tracked device: the daemon is started, a tracker attached,
  # some blocks written, then stopped cleanly (or killed with -9), and the next start is timed until
  # 'tracker collect' answers with the device, against a start with no state.
  echo "== persist: start time with the state of a 10 TiB tracked device" >&2
  truncate -s 10T "$W/big.img"
  big_start() {  # big_start -> seconds from launch to a tracker-collect answer listing disk0
    local t0 t1 i
    t0=$(date +%s.%N)
    "$ROOT/bin/blksnapd" --data-dir "$W/big.d" --device "disk0=$W/big.img" --listen none --socket "$W/big.sock" \
      --log-level INFO >>"$OUT/big.log" 2>&1 &
    echo $! > "$W/big.jpid"; PIDS+=($!)
    for ((i = 0; i < 600; i++)); do
      if [ -S "$W/big.d/control.sock" ] && bsnap big tracker collect 2>/dev/null | grep -q disk0; then break; fi
      if [ -S "$W/big.d/control.sock" ] && [ "${1:-}" = fresh ] && bsnap big version >/dev/null 2>&1; then break; fi
      sleep 0.05
    done
    t1=$(date +%s.%N); python3 -c "print(round($t1-$t0, 3))"
  }
  big_stop() { kill "${1:--TERM}" "$(cat "$W/big.jpid")" 2>/dev/null || true; wait "$(cat "$W/big.jpid")" 2>/dev/null || true; rm -f "$W/big.sock"; }
  for ((r = 1; r <= ROUNDS; r++)); do
    rm -rf "$W/big.d"
    v=$(big_start fresh); record persist start-10T-nostate blksnapd "$r" "$v" s
    id=$(bsnap big snapshot create --device disk0); bsnap big snapshot destroy --id "$id"
    fio --name=dirty --ioengine=nbd --uri="$(nbd_uri "$W/big.sock" disk0)" --rw=randwrite --bs=64k --size=10T \
      --io_size=256M --iodepth=8 --output=/dev/null >/dev/null 2>&1 || true
    big_stop -TERM
    v=$(big_start); record persist start-10T-clean blksnapd "$r" "$v" s
    fio --name=dirty --ioengine=nbd --uri="$(nbd_uri "$W/big.sock" disk0)" --rw=randwrite --bs=64k --size=10T \
      --io_size=256M --iodepth=8 --output=/dev/null >/dev/null 2>&1 || true
    big_stop -KILL
    v=$(big_start); record persist start-10T-after-kill9 blksnapd "$r" "$v" s
    big_stop -TERM
    echo "  round $r: start with 10 TiB state: $(grep "start-10T" "$RAW" | tail -3 | cut -f2,5 | tr '\n' ' ')" >&2
  done
  rm -rf "$W/big.d" "$W/big.img"
fi

# =================================================================================================
# Part 3: engine probes (take latency, heap per snapshot) and Part 4: JMH
# =================================================================================================
if has_part engine; then
  echo "== engine: take latency and heap per snapshot" >&2
  "$BENCH/engine-probe.sh" --dir "$W/probe" $([ "$QUICK" = 1 ] && echo --quick) --tsv "$RAW" \
    2> >(tee "$OUT/engine-probe.log" >&2)
fi
if has_part scale; then
  # on /dev/shm whatever --medium says: a 64 TiB sparse device needs tmpfs (ext4 stops at 16 TiB)
  echo "== scale: take and heap by device count and size, copy-on-write and image reads by threads" >&2
  "$BENCH/engine-probe.sh" --dir "$W/scale" --only scale $([ "$QUICK" = 1 ] && echo --quick) --tsv "$RAW" \
    2> >(tee "$OUT/engine-scale.log" >&2)
  # again with change tracking kept on the root disk, as the daemon keeps it (keys ending in -persist)
  echo "== scale: the same with persistent change tracking (state in $WDISK)" >&2
  mkdir -p "$WDISK"
  "$BENCH/engine-probe.sh" --dir "$W/scale" --only scale --state "$WDISK/scale-state" \
    $([ "$QUICK" = 1 ] && echo --quick) --tsv "$RAW" 2> >(tee "$OUT/engine-scale-persist.log" >&2)
  rm -rf "$WDISK"
fi
if has_part jmh; then
  echo "== jmh" >&2
  "$BENCH/jmh.sh" --quick -rf json -rff "$OUT/jmh.json" 2>&1 | tee "$OUT/jmh.txt" >&2
fi

echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/env.txt"
python3 "$BENCH/summarize.py" "$OUT" > "$OUT/table.md"
cat "$OUT/table.md"
echo "run.sh: results in $OUT (table.md, raw.tsv, fio/*.json)" >&2
