"""torch_counter.py - a PyTorch workload for the real-GPU check (scripts/gpu-device-check.sh).

A seeded model of Linear layers lives on the GPU, with a counter tensor on the GPU that
each tick bumps, after one inference pass. It prints "tick T counter C" every tick and,
on SIGUSR1, checks on the GPU that the weights still sum to what they summed to at start
and that the same input still gives the same output, printing
"verify ok ... checksum=X" or "verify FAIL ...". Same protocol as gpu_counter.cu.
"""
import os
import signal
import sys
import time

import torch

LAYERS = int(os.environ.get("TORCH_LAYERS", "8"))
WIDTH = int(os.environ.get("TORCH_WIDTH", "4096"))

want = []
signal.signal(signal.SIGUSR1, lambda *a: want.append(1))

torch.manual_seed(4242)
dev = torch.device("cuda")
model = torch.nn.Sequential(*[torch.nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)]).to(dev)
model.eval()
x = torch.randn(64, WIDTH, device=dev)
counter = torch.zeros((), dtype=torch.int64, device=dev)


def weights_sum():
    with torch.no_grad():
        return sum(p.double().sum() for p in model.parameters()).item()


with torch.no_grad():
    ref_out = model(x).double().sum().item()
ref_sum = weights_sum()
params = sum(p.numel() for p in model.parameters())
print("ready pid=%d params=%d" % (os.getpid(), params), flush=True)

t = 0
while True:
    t += 1
    with torch.no_grad():
        model(x)
        counter += 1
    print("tick %d counter %d" % (t, counter.item()), flush=True)
    if want:
        want.clear()
        t0 = time.monotonic()
        s = weights_sum()
        with torch.no_grad():
            out = model(x).double().sum().item()
        same_out = abs(out - ref_out) <= 1e-6 * max(1.0, abs(ref_out))
        ok = s == ref_sum and same_out
        print("verify %s params=%d weights_equal=%s output_equal=%s checksum=%r ms=%d"
              % ("ok" if ok else "FAIL", params, s == ref_sum, same_out, s,
                 (time.monotonic() - t0) * 1000), flush=True)
    time.sleep(0.05)
