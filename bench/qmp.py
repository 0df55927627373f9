#!/usr/bin/env python3
"""Minimal QMP client for the benchmark harness.

Usage: qmp.py SOCKET 'CMD [JSON-ARGS]' ...
Runs each command in order on one connection; prints each 'return' as JSON; exits 1 on the first
error (printing QMP's error description). Events are skipped.
"""
import json
import socket
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    f = s.makefile("rw")

    def recv():
        while True:
            line = f.readline()
            if not line:
                raise SystemExit("qmp: connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    recv()  # greeting
    f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
    f.flush()
    recv()
    for arg in sys.argv[2:]:
        name, _, rest = arg.partition(" ")
        cmd = {"execute": name}
        if rest.strip():
            cmd["arguments"] = json.loads(rest)
        f.write(json.dumps(cmd) + "\n")
        f.flush()
        reply = recv()
        if "error" in reply:
            print(f"qmp: {name}: {reply['error'].get('desc')}", file=sys.stderr)
            return 1
        print(json.dumps(reply.get("return")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
