# A job that holds SIZE_MB of memory (argv[1], default 1024): a quarter random,
# the rest patterned text and floats, so compression has work of both kinds.
# Prints "sum HEX" once filled, then "tick N" every 100 ms; on SIGUSR1 prints
# "check HEX" over the same memory: after a restore it must equal "sum".
import array
import hashlib
import os
import signal
import sys
import time

mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
q = mb * 1024 * 1024 // 4
rand = bytearray(os.urandom(q))
text = bytearray((b"stasis checkpoint test line %08d\n" * (q // 36 + 1))[:q])
floats = array.array("d", [i * 0.5 for i in range(1024)]) * (q // 8 // 1024)
sparse = bytearray(q)
for i in range(0, q, 65536):
    sparse[i] = i % 251


def digest():
    h = hashlib.sha1()
    for part in (rand, text, floats, sparse):
        h.update(part)
    return h.hexdigest()


check = False


def on_usr1(sig, frame):
    global check
    check = True


signal.signal(signal.SIGUSR1, on_usr1)
print("sum", digest(), flush=True)
n = 0
while True:
    n += 1
    if check:
        check = False
        print("check", digest(), flush=True)
    print("tick", n, flush=True)
    time.sleep(0.1)
