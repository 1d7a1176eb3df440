"""K=4 small sub-models plus their evaluation: sequential vs a 2-worker pool vs Ray with 2 workers.

    python benchmarks/executor_scaling.py [--steps 40] [--rounds 2]

The same four LoRA jobs (a Llama of 3 layers x 128 hidden, the demo's size; 8 x 128 tokens per
step) and the evaluation of the four sub-models on a 60-item multiple-choice task, in fresh run
directories, placed four ways:
- sequential: one job at a time, with the threads dtmerge picks by itself (all cores), and
  again with one thread per job (seq-1thr: what a 2-worker pool parallelises);
- pool: train.parallel_jobs=2 and eval.parallel_jobs=2, one thread per job;
- ray: a local Ray cluster of 2 CPUs, one CPU (and thread) per task.
Each placement is a fresh process running `dtm run CONFIG --stages train,eval -q` (the
command's own entry point, `dtmerge.cli.main.entry`), timed from the interpreter's start to its
exit: what a user waits for, imports included (the driver's for sequential runs, the pool's fork
server's or Ray workers' for the others). Until 2026-12-01 all four ran in this one process,
whose imports were done before the timing while the pool's and Ray's were inside it; until
2026-12-01 16:45 UTC the fresh process called `run_pipeline`, not the command. The placements
take turns, `--rounds` times; the speed-ups use the medians. The Ray cluster is started before
each Ray run, as `ray start` would be, not counted, and stopped before the other placements
run. (`dtm run`'s eval stage also scores the variants' bias probe, a sub-second job, in every
placement.)

It also prints the pool's ceiling: the pooled run's wall had each of its two rounds of jobs
taken one median sequential job (perfect scaling), with the pool's own start-up (until its
fork server has imported the job modules) and tail (evaluation, exit), from the manifests' job
times. A ratio goal above that ceiling cannot be met by placing jobs better.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
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


def write_portions(root: Path, name: str, recs) -> None:
    from dtmerge.rundir import RunDir

    run = RunDir(root / "runs" / name)
    for k in range(K):
        run.portion(k).parent.mkdir(parents=True, exist_ok=True)
        run.portion(k).write_text("".join(json.dumps(r) + "\n" for r in recs[k::K]))


PLACEMENTS = {
    "sequential": {},
    "seq-1thr": {"train": {"threads_per_job": 1}},
    "pool": {"train": {"parallel_jobs": 2}, "eval": {"parallel_jobs": 2}},
    "ray": {"train": {"executor": "ray", "cpus_per_job": 1},
            "eval": {"executor": "ray", "cpus_per_job": 1}},
}


def child(root: Path, name: str, variant: str, steps: int, ray_address: str | None) -> None:
    """One placement, run by `dtm run CONFIG --stages train,eval -q` in this fresh process."""
    from dtmerge.cli.main import entry
    from dtmerge.rundir import RunDir

    placement = copy.deepcopy(PLACEMENTS[variant])
    if ray_address:
        placement["train"]["ray_address"] = ray_address
    cfg = config(root, name, steps, **placement)
    config_file = root / f"{name}.yaml"
    config_file.write_text(cfg.to_yaml())
    sys.argv = ["dtm", "run", str(config_file), "--stages", "train,eval", "-q"]
    start = time.perf_counter()
    if entry():
        raise SystemExit(f"dtm run failed for {variant}")
    seconds = time.perf_counter() - start
    run = RunDir(cfg.run_dir)
    print(json.dumps({"command_s": seconds,
                      "threads": run.job("train:sub_0")["threads"],
                      "scores": [run.job(f"eval:sub_{k}")["scores"]["bench_mc"] for k in range(K)]}))


def time_split(run_dir: Path, start: float, end: float) -> dict:
    """Where a run's time went, from the manifest's job times (epoch seconds): each training
    job's wall, when the second job started (in a pool: when the fork server had imported the
    job modules, since submitting to a pool whose server is still importing waits for it), and
    the tail after the last training job (evaluation, exit)."""
    from dtmerge.rundir import RunDir

    jobs = RunDir(run_dir).read_manifest()["jobs"]
    train = [jobs[f"train:sub_{k}"] for k in range(K)]
    return {"job_walls": sorted(j["finished"] - j["started"] for j in train),
            "second_start_s": sorted(j["started"] for j in train)[1] - start,
            "tail_s": end - max(j["finished"] for j in train)}


def perfect_scaling(sequential: dict, pooled: dict) -> float:
    """The pooled run's wall if its two rounds of two 1-thread jobs each took one median
    sequential (2-thread) job: its own start-up and tail, nothing shared between the jobs."""
    walls = sequential["job_walls"]
    return pooled["second_start_s"] + (K // 2) * statistics.median(walls) + pooled["tail_s"]


def run_fresh(root: Path, name: str, variant: str, steps: int, ray_address: str | None) -> dict:
    """Wall seconds of a fresh process running one placement, interpreter start to exit."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--steps", str(steps),
           "--child", str(root), name, variant, ray_address or ""]
    t0, started_at = time.perf_counter(), time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"{variant} failed:\n{res.stderr[-3000:]}")
    # (Ray prints its workers' output to the driver's stdout: take the line we printed)
    info = json.loads([ln for ln in res.stdout.splitlines() if ln.startswith('{"command_s"')][-1])
    info["wall_s"] = wall
    info.update(time_split(root / "runs" / name, started_at, started_at + wall))
    print(f"  {variant:10s} {wall:6.1f} s process ({info['command_s']:.1f} s of it in "
          f"the command; threads per job {info['threads']}, "
          f"scores {', '.join(f'{x:.3f}' for x in info['scores'])})", flush=True)
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2, help="each placement once per round, "
                    "in turn, as fresh processes")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        root, name, variant, address = args.child
        child(Path(root), name, variant, args.steps, address or None)
        return
    import ray

    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="executor-scaling-"))
    times: dict[str, list] = {v: [] for v in PLACEMENTS}
    try:
        recs = make_inputs(root)
        for r in range(args.rounds):
            print(f"round {r + 1}", flush=True)
            for variant in PLACEMENTS:
                name = f"{variant}-{r}"
                write_portions(root, name, recs)
                if variant != "ray":
                    times[variant].append(run_fresh(root, name, variant, args.steps, None))
                    continue
                # A cluster of 2 CPUs on loopback, started as `ray start` would be and joined
                # by the variant's process; its start-up is not a stage's cost, and it is
                # stopped before the other placements run (its daemons take CPU time).
                t0 = time.perf_counter()
                ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2,
                         include_dashboard=False, log_to_driver=False)
                print(f"  (Ray cluster start: {time.perf_counter() - t0:.1f} s, not counted)")
                try:
                    address = ray.get_runtime_context().gcs_address
                    times[variant].append(run_fresh(root, name, variant, args.steps, address))
                finally:
                    ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {v: statistics.median(i["wall_s"] for i in runs) for v, runs in times.items()}
    # The ceiling of the pool's ratio: the imports before the first job and the tail stay
    # whatever the placement, so even perfect scaling of the jobs gives only this much.
    ceilings = [seq["wall_s"] / perfect_scaling(seq, pooled)
                for seq, pooled in zip(times["sequential"], times["pool"])]
    print(f"pool, perfect scaling of its jobs: x{statistics.median(ceilings):.2f} vs sequential "
          f"(per round {', '.join(f'x{c:.2f}' for c in ceilings)}; the pooled run's own "
          f"start-up {statistics.median(i['second_start_s'] for i in times['pool']):.1f} s and "
          f"tail {statistics.median(i['tail_s'] for i in times['pool']):.1f} s, medians)")
    for name in ("pool", "ray"):
        print(f"{name} with 2 workers, median of {args.rounds}: x{med['sequential'] / med[name]:.2f} "
              f"vs sequential (goal >= 1.6), x{med['seq-1thr'] / med[name]:.2f} vs sequential with "
              f"1 thread")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
