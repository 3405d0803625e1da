#!/usr/bin/env python3
"""A stand-in for a training job: holds a few hundred MiB of state, advances a
step counter, and prints a checksum of its state so a restored run can be seen
to continue exactly where it stopped.

usage: train.py [MiB] (default 256)
"""
import hashlib
import os
import sys
import time

mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
quarter = mib * 1024 * 1024 // 4
state = [
    os.urandom(quarter),                                    # weights: incompressible
    (b"def step(x): return x * 0.999 + 1  # notes\n" * (quarter // 44 + 1))[:quarter],
    bytearray(quarter),                                     # optimizer buffers: mostly zero
    bytes(range(256)) * (quarter // 256),                   # lookup tables
]
digest = hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in state)).hexdigest()[:16]
print(f"pid {os.getpid()} holds {mib} MiB, state {digest}", flush=True)
step = 0
while True:
    step += 1
    state[2][step % quarter] = step % 251
    print(f"step {step} state {digest}", flush=True)
    time.sleep(0.5)
