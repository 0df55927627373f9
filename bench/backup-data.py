#!/usr/bin/env python3
"""The backup benchmarks' device: SIZE bytes at PATH, the first half random, the second half text.

    bench/backup-data.py PATH BYTES

Used by bench/backup.sh and bench/probes/backup-reads.sh, so that both back up the same kind of bytes.
"""
import os
import sys

path, size = sys.argv[1], int(sys.argv[2])
line = b"the quick brown fox jumps over the lazy dog; backup benchmark text line 0123456789\n"
text = (line * (16 * 1024 * 1024 // len(line) + 1))[:16 * 1024 * 1024]
with open(path, "wb") as f:
    done = 0
    while done < size:
        n = min(16 << 20, size - done)
        f.write(os.urandom(n) if done < size // 2 else text[:n])
        done += n
