#!/usr/bin/env bash
# Builds target/bench/benchmarks.jar (Maven profile "bench": JMH suite + EngineProbe) when missing
# or older than the sources. Prints the jar path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JAVA_HOME="$("$ROOT/bin/jdk25")"; export JAVA_HOME
JAR="$ROOT/target/bench/benchmarks.jar"
if [ ! -f "$JAR" ] || [ -n "$(find "$ROOT/src/main" "$ROOT/src/jmh" "$ROOT/pom.xml" -newer "$JAR" -type f -print -quit)" ]; then
  echo "build-bench: mvn -Pbench -DskipTests package ..." >&2
  (cd "$ROOT" && { mvn -B -q -o -Pbench -DskipTests package >&2 2>/dev/null || mvn -B -q -Pbench -DskipTests package >&2; })
fi
echo "$JAR"
