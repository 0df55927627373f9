#!/usr/bin/env python3
"""Zero-copy receive experiment: 1 MiB payloads over a Unix stream socket, received (A) with
recv_into + pwrite (two copies) or (B) splice socket->pipe until the whole payload is staged, then
splice pipe->file (one copy). Sender is a forked process sending whole payloads (like libnbd).
See docs/benchmarks-log.md, "The eleventh session".

    N=2048 R=3 bench/probes/splice-receive.py        (FILE=/var/tmp/spl.img for ext4; PIPE=bytes)
"""
import os, socket, time, fcntl, select
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
PAY = 1 << 20
N = int(os.environ.get('N', '2048'))
FILE = os.environ.get('FILE', '/dev/shm/spl.img'); FSIZE = 1 << 30
PIPE = int(os.environ.get('PIPE', str(1 << 20)))
if not os.path.exists(FILE) or os.path.getsize(FILE) != FSIZE:
    with open(FILE, 'wb') as f:
        for _ in range(FSIZE // PAY): f.write(b'\1' * PAY)

def sender(s):
    """The child: sends N payloads, then leaves without running the parent's clean-up."""
    try:
        buf = os.urandom(PAY)
        for _ in range(N):
            s.sendall(buf)
    except BrokenPipeError:  # the receiver stopped early
        pass
    finally:
        os._exit(0)

def run(mode):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        a.close(); sender(b)
    b.close()
    fd = os.open(FILE, os.O_WRONLY)
    t0 = time.perf_counter(); full = 0; calls = 0
    if mode == 'buffered':
        buf = bytearray(PAY); mv = memoryview(buf)
        for i in range(N):
            got = 0
            while got < PAY:
                n = a.recv_into(mv[got:]); calls += 1
                if n == 0: raise SystemExit('eof')
                got += n
            os.pwrite(fd, buf, (i * PAY) % FSIZE)
    else:
        r, w = os.pipe()
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE)
        sz = fcntl.fcntl(w, F_GETPIPE_SZ)
        sfd = a.fileno()
        for i in range(N):
            staged = 0
            while staged < PAY:
                try:
                    n = os.splice(sfd, w, PAY - staged, flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK); calls += 1
                except BlockingIOError:
                    rd, _, _ = select.select([sfd], [], [], 0)
                    if rd:  # data waiting but the pipe took nothing (three times): the pipe is full
                        full += 1
                        if full < 3: continue
                        raise SystemExit(f'pipe of {sz} bytes full before a whole payload was staged (had {staged})')
                    select.select([sfd], [], [])
                    continue
                if n == 0: raise SystemExit('eof')
                staged += n; full = 0
            off = (i * PAY) % FSIZE; left = PAY
            while left:
                m = os.splice(r, fd, left, offset_dst=off + PAY - left); left -= m
        os.close(r); os.close(w)
    dt = time.perf_counter() - t0
    os.waitpid(pid, 0); a.close(); os.close(fd)
    print(f'{mode}: {N*PAY/dt/1e6:,.0f} MB/s, {calls/N:.1f} receive calls per payload' + ('' if mode == 'buffered' else f', pipe {sz} bytes'))

try:
    for rnd in range(int(os.environ.get('R', '3'))):
        for m in ('buffered', 'splice'):
            run(m)
finally:
    os.remove(FILE)
