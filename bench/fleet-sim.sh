#!/usr/bin/env bash
# blksnap for Java — fleet simulation at reduced scale (issue 12; docs/repository.md, "Scale").
#
#   bench/fleet-sim.sh [--hosts N] [--size MIB] [--block KIB] [--days N] [--change PERCENT] [--keep N] [--parallel N]
#                      [--dir]      (into a directory repository instead of s3proxy)
#
# Starts s3proxy (the jar the build copies to target/s3proxy, filesystem backend under /dev/shm),
# then bench/FleetSim.java: HOSTS simulated hosts back up into one s3:// repository every simulated
# day after changing CHANGE % of their blocks; prune and gc after each day. Prints a table of the
# per-host costs (requests by kind, bytes) and the repository's objects; also in
# bench/results/fleet-sim-<timestamp>/table.md. Defaults: 100 hosts of 16 MiB, 4 KiB blocks,
# 6 days, 1 %, keep 3, 8 at a time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HOSTS=100 SIZE=16 BLOCK=4 DAYS=6 CHANGE=1 KEEP=3 PAR=8 DIR=0
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) HOSTS=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --block) BLOCK=$2; shift ;;
    --days) DAYS=$2; shift ;;
    --change) CHANGE=$2; shift ;;
    --keep) KEEP=$2; shift ;;
    --parallel) PAR=$2; shift ;;
    --dir) DIR=1 ;;
    *) echo "usage: bench/fleet-sim.sh [--hosts N] [--size MIB] [--block KIB] [--days N] [--change PERCENT] [--keep N] [--parallel N] [--dir]" >&2; exit 64 ;;
  esac
  shift
done
JAVA_HOME=$(cd "$ROOT" && bin/jdk25); export JAVA_HOME
JAVA="$JAVA_HOME/bin/java"
if [ ! -f "$ROOT/target/s3proxy/s3proxy.jar" ] || [ ! -d "$ROOT/target/test-classes" ] || [ ! -d "$ROOT/target/lib" ]; then
  (cd "$ROOT" && mvn -B -q -ntp -DskipTests package >&2)
fi
OUT="$ROOT/bench/results/fleet-sim-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
W=$(mktemp -d /dev/shm/blksnap-fleet.XXXXXX)
S3PID=""
cleanup() {
  [ -n "$S3PID" ] && kill "$S3PID" 2>/dev/null && wait "$S3PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
CP="$ROOT/target/classes:$ROOT/target/test-classes:$ROOT/target/lib/*"
KEY=fleet SECRET=fleet-secret
if [ "$DIR" = 1 ]; then
  REPO="$W/repo"; ENDPOINT=""
else
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$W/s3/fleet-bucket"   # the filesystem backend: a bucket is a directory
  cat >"$W/s3proxy.conf" <<CONF
s3proxy.endpoint=http://127.0.0.1:$PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$KEY
s3proxy.credential=$SECRET
jclouds.provider=filesystem
jclouds.filesystem.basedir=$W/s3
CONF
  "$JAVA" -Xmx512m -jar "$ROOT/target/s3proxy/s3proxy.jar" --properties "$W/s3proxy.conf" >"$OUT/s3proxy.log" 2>&1 &
  S3PID=$!
  for _ in $(seq 600); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  REPO="s3://fleet-bucket/repo"; ENDPOINT="http://127.0.0.1:$PORT"
fi
mkdir -p "$W/devices"
export BLKSNAP_CACHE_DIR="$W/cache"
"$JAVA" --enable-native-access=ALL-UNNAMED -Xmx2g -Daws.accessKeyId=$KEY -Daws.secretAccessKey=$SECRET -Daws.region=us-east-1 \
  -Dlogback.configurationFile="$ROOT/bench/logback-quiet.xml" -cp "$CP" "$ROOT/bench/FleetSim.java" \
  "$REPO" "$W/devices" "$HOSTS" "$SIZE" "$BLOCK" "$DAYS" "$CHANGE" "$KEEP" "$PAR" $ENDPOINT | tee "$OUT/table.md"
echo "bench/fleet-sim.sh: results in $OUT" >&2
