"""The dry run's memory and time estimate beside a measured training job (peak RSS, seconds).

Runs `dtm run CONFIG --stages data,prepare,train` in a temporary run directory with K=2
sub-models, no SFT baseline, no recipes beyond DTM, no monitor and `train.max_steps` steps,
one job at a time, while sampling the resident memory of every process of the run every
0.1 s; then prints the dry run's estimate for the same overrides beside the largest process's
peak RSS and each job's seconds from the manifest.

    python benchmarks/dryrun_cost.py configs/gemma3-270m.yaml --steps 4
    python benchmarks/dryrun_cost.py ~/.cache/dtmerge/testbed/v5-small-seed0/config.yaml

Any further arguments are config overrides (key=value).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def tree_peak_rss(proc: subprocess.Popen, every: float = 0.1) -> int:
    """Largest resident set of any single process of `proc`'s tree while it runs (bytes)."""
    peak = 0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                peak = max(peak, p.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(every)
    return peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per job")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dtm-cost-") as tmp:
        overrides = [f"runs_dir={tmp}", "name=cost", "disperse.num_portions=2",
                     "train.sft_baseline=false", "recipes=[{name: dtm}]", "monitor.enabled=false",
                     f"train.max_steps={args.steps}", "train.parallel_jobs=1",
                     "train.save_steps=100000", *args.overrides]
        from dtmerge.config import load_config
        from dtmerge.dryrun.plan import make_plan

        plan = make_plan(load_config(args.config, overrides))
        start = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "dtmerge.cli.main", "-q", "run",
                                 args.config, *overrides, "--stages", "data,prepare,train"])
        peak = tree_peak_rss(proc)
        if proc.wait() != 0:
            return proc.returncode
        wall = time.time() - start
        jobs = json.loads((Path(tmp) / "cost" / "manifest.json").read_text())["jobs"]
    gib = 1 << 30
    print(f"config {args.config}, {args.steps} steps per job, load {psutil.getloadavg()[0]:.1f}")
    for job in plan["jobs"]:
        cost, done = job["cost"], jobs.get(f"train:{job['name']}", {})
        print(f"  {job['name']}: estimated peak {cost['memory']['total_bytes'] / gib:.2f} GiB "
              f"({cost['memory']['where']}), {cost['seconds']:.0f} s; measured "
              f"{done.get('seconds')} s (trainer {done.get('train_runtime')} s)")
    print(f"  measured peak RSS of the largest process: {peak / gib:.2f} GiB; wall {wall:.0f} s")
    print(json.dumps({"peak_rss_bytes": peak, "wall_s": wall,
                      "jobs": {k: v.get("seconds") for k, v in jobs.items()},
                      "estimate": [j["cost"] for j in plan["jobs"]]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
