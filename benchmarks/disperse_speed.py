"""Wall time of the data and disperse stages on synthetic Alpaca data (CPU).

Usage: python benchmarks/disperse_speed.py [N_EXAMPLES]   (default 10000; the paper: 326000)

The data has 10 topics (distinct 300-word vocabularies, 60% of words on topic) and 11 sources
(TULU's count); the run splits it into K=4 portions with each strategy (random, kmeans, and
field over the 11 sources) and reports seconds per stage, sizes, and the peak memory of each
strategy's run (a fresh process per strategy, so one run's memory does not hide another's).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dtmerge.config import RunConfig
from dtmerge.data import prepare_data
from dtmerge.disperse import disperse_portions
from dtmerge.rundir import RunDir


def write_data(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    with open(path, "w") as fh:
        for i in range(n):
            topic = vocab[(i % 10) * 300:(i % 10 + 1) * 300]
            words = [rng.choice(topic) if rng.random() < 0.6 else rng.choice(vocab) for _ in range(60)]
            fh.write(json.dumps({"instruction": f"question {i}", "input": "",
                                 "output": " ".join(words), "source": f"src{i % 11}"}) + "\n")


def one_strategy(root: Path, strategy: str, n: int) -> None:
    quiet = lambda _: None  # noqa: E731
    cfg = RunConfig(name=strategy, runs_dir=str(root / "runs"), model={"path": "unused"},
                    data={"path": str(root / "data.jsonl")},
                    disperse={"strategy": strategy, "num_portions": 4,
                              **({"field": "source"} if strategy == "field" else {})})
    run = RunDir(cfg.run_dir)
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    prepare_data(cfg, run, log=quiet)
    t1 = time.perf_counter()
    summary = disperse_portions(cfg, run, log=quiet)
    t2 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sizes = [p["size"] for p in summary["portions"]]
    print(f"{strategy:7s} n={n}: data {t1 - t0:.1f}s  disperse {t2 - t1:.1f}s  "
          f"peak memory {peak_mb:.0f} MB (imports {base_mb:.0f} MB)  sizes {sizes}", flush=True)


def main(n: int) -> None:
    root = Path(tempfile.mkdtemp())
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    write_data(root / "data.jsonl", n)
    for strategy in ("random", "kmeans", "field"):
        subprocess.run([sys.executable, __file__, "--one", str(root), strategy, str(n)], check=True)
    shutil.rmtree(root, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        import sklearn.cluster  # noqa: F401 - counted in the baseline, as in any run

        one_strategy(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000)
