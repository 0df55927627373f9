# Sourced by the probes that run one blksnapd on $W serving $D as disk0 (not run on its own).
#   start_blksnapd [FLAGS...]  starts it (NBD on $W/b.sock, control in $W/b.d, log $W/b.log, JVM
#                              properties from $OPTS), sets BP and U (the export's URI), and returns
#                              once the control socket is up, or exits with the log if it died.
#   bs ARGS...                 runs blksnap against it.
#   probe_device MIB           creates $W and the device $D = $W/disk.img of MIB MiB written full
#                              (every page exists), and sets the trap that kills $BP and removes $W.
# Otherwise the caller's trap kills $BP and removes $W.
probe_device() {
  mkdir -p "$W"; D=$W/disk.img
  trap 'kill ${BP:-} 2>/dev/null; wait; rm -rf "$W"' EXIT
  fio --name=fill --filename="$D" --rw=write --bs=1M --size="$1"M --ioengine=psync --output=/dev/null >/dev/null
}
start_blksnapd() {
  BLKSNAPD_JAVA_OPTS="${OPTS:-}" "$ROOT/bin/blksnapd" --data-dir "$W/b.d" --device "disk0=$D" --listen none \
    --socket "$W/b.sock" --log-level WARN "$@" >"$W/b.log" 2>&1 &
  BP=$!
  U="nbd+unix:///disk0?socket=$W/b.sock"
  while [ ! -S "$W/b.d/control.sock" ]; do
    kill -0 $BP 2>/dev/null || { echo "blksnapd did not start:" >&2; cat "$W/b.log" >&2; exit 1; }
    sleep 0.2
  done
  sleep 1
}
bs() { BLKSNAP_CONTROL="$W/b.d/control.sock" "$ROOT/bin/blksnap" "$@"; }
