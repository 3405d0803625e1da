#!/usr/bin/env python3
"""idle_peers.py HOST PORT N SECONDS [PREFIX_BYTES]: keep N TCP connections to
HOST:PORT open for SECONDS (or until SIGTERM), sending nothing (or the first
PREFIX_BYTES bytes of a TLS record header, then nothing), and open a new one
whenever the peer closes one. Prints how many connections it opened and how
many the peer closed."""
import select
import signal
import socket
import sys
import time


def stop(*_):
    raise SystemExit(0)


host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
prefix = b"\x16\x03\x01\x02\x00"[: int(sys.argv[5])] if len(sys.argv) > 5 else b""
socks, opened, closed = [], 0, 0
signal.signal(signal.SIGTERM, stop)
end = time.time() + secs
try:
    while time.time() < end:
        while len(socks) < n:
            try:
                s = socket.create_connection((host, port), timeout=2)
            except OSError:
                time.sleep(0.05)
                break
            if prefix:
                s.send(prefix)
            socks.append(s)
            opened += 1
        r, _, _ = select.select(socks, [], [], 0.05)
        for s in r:
            try:
                d = s.recv(100)
            except OSError:
                d = b""
            if not d:
                socks.remove(s)
                s.close()
                closed += 1
        # A real attacker would not pause; a test on a shared machine does.
        time.sleep(0.01)
finally:
    print("opened %d closed %d" % (opened, closed), flush=True)
