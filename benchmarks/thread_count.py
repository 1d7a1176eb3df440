"""Training-step time of the demo-sized model with 1 vs 2 threads, quiet vs one busy core.

Usage: python benchmarks/thread_count.py [STEPS]

Each setting runs in a fresh process (OpenMP reads OMP_WAIT_POLICY once, at start-up):
torch.set_num_threads(T) with OpenMP's default spin-waiting, and with OMP_WAIT_POLICY=passive
(threads sleep instead of spinning while they wait for the others). "busy" starts one
CPU-bound process beside it, as a laptop's other work would. Prints seconds per step, CPU
seconds per step, and the ratio of each setting against 1 thread in the same load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, os, sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.set_num_threads(int(sys.argv[1])); torch.manual_seed(0)
# The demo's small testbed model (hidden 128, 3 layers) at the demo's batch 16 x 128 tokens.
cfg = LlamaConfig(vocab_size=1000, hidden_size=128, intermediate_size=384, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
model = LlamaForCausalLM(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x = torch.randint(0, 1000, (16, 128))
def step():
    loss = model(input_ids=x, labels=x).loss
    loss.backward(); opt.step(); opt.zero_grad()
for _ in range(3): step()
steps = int(sys.argv[2]); t0, c0 = time.perf_counter(), time.process_time()
for _ in range(steps): step()
print(json.dumps({"s_per_step": (time.perf_counter() - t0) / steps,
                  "cpu_per_step": (time.process_time() - c0) / steps}))
"""


def _busy() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(threads: int, passive: bool, steps: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "passive"
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(steps)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    settings = [(1, False), (2, False), (2, True)]
    for load in ("quiet", "busy"):
        hog = _busy() if load == "busy" else None
        try:
            time.sleep(0.5 if hog else 0)
            rows = {(t, p): measure(t, p, steps) for t, p in settings}
        finally:
            if hog:
                hog.kill()
                hog.wait()
        one = rows[(1, False)]["s_per_step"]
        for (t, p), r in rows.items():
            name = f"{t} thread{'s' if t > 1 else ''}" + (" passive" if p else "")
            print(f"{load:5s} {name:18s} {r['s_per_step'] * 1000:7.1f} ms/step  "
                  f"cpu {r['cpu_per_step'] * 1000:7.1f} ms/step  "
                  f"x{one / r['s_per_step']:.2f} vs 1 thread")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
