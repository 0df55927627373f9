#!/usr/bin/env bash
# Take latency (1/4/16 sparse 1 TiB devices, idle and under writes) and heap per snapshot
# (1 GiB, 1 TiB, 10 TiB), in-process; with --only scale the cost curves (see EngineProbe's Javadoc).
# Arguments go to org.blksnap.bench.EngineProbe:
#   --dir DIR (default /dev/shm/blksnap-probe)  --quick  --tsv FILE  --only take,heap,scale
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JAR="$("$ROOT/bench/build-bench.sh")"
JAVA_HOME="$("$ROOT/bin/jdk25")"
exec "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -XX:+UseG1GC -Xmx4g \
  -Dlogback.configurationFile="$ROOT/bench/logback-quiet.xml" \
  -cp "$JAR" org.blksnap.bench.EngineProbe "$@"
