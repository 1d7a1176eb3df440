"""Wall time of the data and disperse stages on synthetic Alpaca data (CPU).

Usage: python benchmarks/disperse_speed.py [N_EXAMPLES]   (default 10000)

The data has 10 topics (distinct 300-word vocabularies, 60% of words on topic); the run
splits it into K=4 portions with each strategy and reports seconds per stage and sizes.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

from dtmerge.config import RunConfig
from dtmerge.data import prepare_data
from dtmerge.disperse import disperse_stage
from dtmerge.rundir import RunDir


def write_data(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    with open(path, "w") as fh:
        for i in range(n):
            topic = vocab[(i % 10) * 300:(i % 10 + 1) * 300]
            words = [rng.choice(topic) if rng.random() < 0.6 else rng.choice(vocab) for _ in range(60)]
            fh.write(json.dumps({"instruction": f"question {i}", "input": "",
                                 "output": " ".join(words), "source": f"topic{i % 10}"}) + "\n")


def main(n: int) -> None:
    root = Path(tempfile.mkdtemp())
    write_data(root / "data.jsonl", n)
    quiet = lambda _: None  # noqa: E731
    for strategy in ("random", "kmeans"):
        cfg = RunConfig(name=strategy, runs_dir=str(root / "runs"), model={"path": "unused"},
                        data={"path": str(root / "data.jsonl")},
                        disperse={"strategy": strategy, "num_portions": 4})
        run = RunDir(cfg.run_dir)
        t0 = time.perf_counter()
        prepare_data(cfg, run, log=quiet)
        t1 = time.perf_counter()
        summary = disperse_stage(cfg, run, log=quiet)
        t2 = time.perf_counter()
        sizes = [p["size"] for p in summary["portions"]]
        print(f"{strategy:7s} n={n}: data {t1 - t0:.2f}s  disperse {t2 - t1:.2f}s  sizes {sizes}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000)
