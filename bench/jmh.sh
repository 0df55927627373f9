#!/usr/bin/env bash
# Runs the JMH hot-path suite (src/jmh/java/org/blksnap/bench). Arguments go to JMH, e.g.
#   bench/jmh.sh                         # everything, the settings in the annotations (~4 min)
#   bench/jmh.sh --quick                 # shorter: 2 warmup + 3 measurement iterations of 0.5 s
#   bench/jmh.sh CbtMarkBench -prof gc   # one class, with the allocation profiler
#   bench/jmh.sh -l                      # list
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JAR="$("$ROOT/bench/build-bench.sh")"
JAVA_HOME="$("$ROOT/bin/jdk25")"
ARGS=()
for a in "$@"; do
  if [ "$a" = --quick ]; then ARGS+=(-wi 2 -w 500ms -i 3 -r 500ms); else ARGS+=("$a"); fi
done
exec "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -jar "$JAR" \
  -jvmArgsAppend "--enable-native-access=ALL-UNNAMED" "${ARGS[@]}"
