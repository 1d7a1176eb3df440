"""Training time with and without the knowledge monitor, side by side.

Same tiny model, data and settings through dtmerge's `train_model`; the monitor is built by
`build_monitor` from the run config at its default interval (every 50 steps, 100 probe items,
32 held-out records). Runs alternate (plain, monitored, plain, ...) so machine noise hits both
alike. Prints the wall time of each and the ratio; the goal is < 10% overhead.

    .venv/bin/python benchmarks/monitor_overhead.py [--repeats 2] [--steps 100]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PEOPLE = ["alice", "bob", "carol", "dave"]
CITIES = ["paris", "london", "rome", "berlin"]


def make_probe_tasks(root: Path, n: int = 200) -> Path:
    """A local multiple-choice knowledge task for the probe."""
    rng = random.Random(1)
    root.mkdir(parents=True, exist_ok=True)
    rows = [{"question": f"where is {rng.choice(PEOPLE)} born (case {i})", "choices": CITIES,
             "answer": rng.randrange(4)} for i in range(n)]
    (root / "probe.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "probe.yaml").write_text(
        "task: bench_probe\ntag: [knowledge]\ndataset_path: json\ndataset_kwargs:\n"
        f"  data_files:\n    test: {root / 'probe.jsonl'}\ntest_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_choice: "{{choices}}"\n'
        "doc_to_target: answer\nmetric_list:\n  - metric: acc\nmetadata:\n  version: 1.0\n")
    return root


def make_model(path: Path, hidden: int) -> None:
    import torch
    from tiny import build_tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 11 // 4,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128, help="hidden size of the tiny Llama")
    a = parser.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from train_overhead import make_data

    from dtmerge.config import config_from_dict
    from dtmerge.evaluate.monitor import build_monitor
    from dtmerge.rundir import RunDir
    from dtmerge.train import train_model

    tmp = Path(tempfile.mkdtemp(prefix="dtm-monbench-"))
    make_model(tmp / "base", a.hidden)
    make_data(tmp / "data.jsonl", 16 * a.steps)
    make_probe_tasks(tmp / "tasks")
    cfg = config_from_dict({
        "name": "bench", "runs_dir": str(tmp / "runs"),
        "model": {"path": str(tmp / "base")}, "data": {"path": str(tmp / "data.jsonl")},
        "train": {"max_steps": a.steps, "warmup_steps": 0, "save_steps": 10_000,
                  "logging_steps": 10, "trainer_kwargs": {"disable_tqdm": True}},
        "eval": {"include_path": [str(tmp / "tasks")]},
        "monitor": {"enabled": True, "probe_tasks": ["bench_probe"]},
    })
    run = RunDir(cfg.run_dir)
    run.data_dir.mkdir(parents=True, exist_ok=True)
    lines = (tmp / "data.jsonl").read_text().splitlines()
    run.heldout_data.write_text("\n".join(lines[:32]) + "\n")

    times: dict[str, list[float]] = {"plain": [], "monitored": []}
    probe_seconds = []
    for r in range(a.repeats):
        for kind in ("plain", "monitored"):
            callbacks = []
            if kind == "monitored":
                t_build = time.perf_counter()
                monitor = build_monitor(cfg, run, f"bench_{r}")
                build_s = time.perf_counter() - t_build
                callbacks = [monitor]
            t0 = time.perf_counter()
            train_model(cfg, tmp / "data.jsonl", tmp / "out" / f"{kind}_{r}", f"{kind}_{r}",
                        callbacks=callbacks)
            elapsed = time.perf_counter() - t0
            if kind == "monitored":
                elapsed += build_s  # building the probe is part of the monitor's cost
                probe_seconds.append(monitor.seconds)
            times[kind].append(elapsed)
            print(f"repeat {r} {kind:9s} {elapsed:7.2f} s", flush=True)

    plain, mon = statistics.median(times["plain"]), statistics.median(times["monitored"])
    print("\n| run | median wall time (s) | runs |\n|---|---|---|")
    print(f"| without monitor | {plain:.2f} | {', '.join(f'{t:.2f}' for t in times['plain'])} |")
    print(f"| with monitor (every 50 steps, 100 items) | {mon:.2f} | "
          f"{', '.join(f'{t:.2f}' for t in times['monitored'])} |")
    print(f"\nratio monitored/plain = {mon / plain:.3f} (overhead {100 * (mon / plain - 1):+.1f}%);"
          f" time inside probes: {statistics.median(probe_seconds):.2f} s per run")
    # On a shared machine the wall-time ratio is noisy; the time spent inside the monitor's
    # hooks, against the plain run, is the direct measure of its cost.
    print(f"direct overhead = probe time / plain time = "
          f"{100 * statistics.median(probe_seconds) / plain:.1f}%")


if __name__ == "__main__":
    main()
