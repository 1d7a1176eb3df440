"""K=4 small sub-models plus their evaluation: sequential vs a 2-worker pool vs Ray with 2 workers.

    python benchmarks/executor_scaling.py [--steps 40]

The same four LoRA jobs (a Llama of 3 layers x 128 hidden, the demo's size; 8 x 128 tokens per
step) and the evaluation of the four sub-models on a 60-item multiple-choice task, in fresh run
directories, placed three ways side by side in one run:
- sequential: one job at a time in this process, with the threads it picks by itself (all cores),
  and again with one thread per job (seq-1thr: what a 2-worker pool parallelises);
- pool: train.parallel_jobs=2 and eval.parallel_jobs=2, one thread per job;
- ray: a local Ray cluster of 2 CPUs, one CPU (and thread) per task.
Prints wall seconds of train + eval for each, and the speed-up against sequential (goal >= 1.6).
The cluster start-up is timed apart: it is paid once per session, not per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does, before torch loads
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
_SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, _SRC)
# Pool and Ray workers import this checkout's dtmerge too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p)

K = 4


def make_model(path: Path) -> None:
    import torch
    from tiny import build_tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=384, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id)).save_pretrained(path)
    tok.save_pretrained(path)


def make_inputs(root: Path):
    from tiny import WORDS, write_mc_task

    make_model(root / "base")
    recs = [{"prompt": [{"role": "user", "content": " ".join(WORDS[i % 30:i % 30 + 8])}],
             "completion": [{"role": "assistant", "content": " ".join(WORDS[i % 20:i % 20 + 30])}]}
            for i in range(400)]
    rows = [{"question": f"where is {w} born", "choices": ["paris", "london", "rome", "berlin"],
             "answer": i % 4} for i, w in enumerate(WORDS * 2)][:60]
    write_mc_task(root / "tasks", "bench_mc", rows)
    return recs


def config(root: Path, name: str, steps: int, **placement):
    from dtmerge.config import config_from_dict

    train = {"method": "lora", "max_steps": steps, "batch_size": 8, "grad_accum": 1,
             "warmup_steps": 0, "max_length": 128, "logging_steps": 10, "save_steps": 1000,
             "sft_baseline": False, "lora": {"target_modules": "all-linear"}, **placement.get("train", {})}
    return config_from_dict({
        "name": name, "runs_dir": str(root / "runs"), "model": {"path": str(root / "base")},
        "data": {"path": "unused"}, "disperse": {"num_portions": K}, "train": train,
        "eval": {"tasks": ["bench_mc"], "include_path": [str(root / "tasks")],
                 "variants": ["submodels"], "batch_size": 16, **placement.get("eval", {})},
    })


def run_once(root: Path, name: str, recs, steps: int, **placement) -> float:
    from dtmerge.evaluate.stage import evaluate_stage
    from dtmerge.rundir import RunDir
    from dtmerge.train import train_stage

    cfg = config(root, name, steps, **placement)
    run = RunDir(cfg.run_dir)
    for k in range(K):
        run.portion(k).parent.mkdir(parents=True, exist_ok=True)
        run.portion(k).write_text("".join(json.dumps(r) + "\n" for r in recs[k::K]))
    t0 = time.perf_counter()
    train_stage(cfg, run, log=lambda m: None)
    evaluate_stage(cfg, run, log=lambda m: None)
    seconds = time.perf_counter() - t0
    scores = [run.job(f"eval:sub_{k}")["scores"]["bench_mc"] for k in range(K)]
    print(f"  {name:10s} {seconds:7.1f} s  (threads per job {run.job('train:sub_0')['threads']}, "
          f"scores {', '.join(f'{s:.3f}' for s in scores)})", flush=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    import ray

    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="executor-scaling-"))
    try:
        recs = make_inputs(root)
        times = {"sequential": run_once(root, "sequential", recs, args.steps),
                 "seq-1thr": run_once(root, "seq-1thr", recs, args.steps,
                                      train={"threads_per_job": 1})}
        times["pool"] = run_once(root, "pool", recs, args.steps, train={"parallel_jobs": 2},
                                 eval={"parallel_jobs": 2})
        t0 = time.perf_counter()
        ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=False, log_to_driver=False)
        print(f"  (Ray cluster start: {time.perf_counter() - t0:.1f} s, not counted)")
        try:
            times["ray"] = run_once(root, "ray", recs, args.steps,
                                    train={"executor": "ray", "cpus_per_job": 1},
                                    eval={"executor": "ray", "cpus_per_job": 1})
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name in ("pool", "ray"):
        print(f"{name} with 2 workers: x{times['sequential'] / times[name]:.2f} vs sequential "
              f"(goal >= 1.6), x{times['seq-1thr'] / times[name]:.2f} vs sequential with 1 thread")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
