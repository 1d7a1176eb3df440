"""Fixed cost per evaluated variant: plain lm-eval calls against dtmerge's `evaluate_model`.

Plain: `lm_eval.simple_evaluate(model="hf", ...)` with a fresh `TaskManager(include_path=...)`
per variant (what a script looping over variants does). dtmerge: `evaluate_model`, whose
TaskManager is built once per process and indexes only the local task directories when they
hold every task. Same tiny model, same local tasks; N variants evaluated one after another.

    .venv/bin/python benchmarks/eval_overhead.py [--variants 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=4)
    a = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import lm_eval
    import importlib.util

    def load(name: str, path: Path):  # two conftest.py files: import each by path
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    build_tiny_model_dir = load("tests_conftest", ROOT / "tests/conftest.py").build_tiny_model_dir
    write_task_dir = load("eval_conftest", ROOT / "tests/evaluate/conftest.py").write_task_dir
    from lm_eval.tasks import TaskManager

    from dtmerge.config import EvalConfig
    from dtmerge.evaluate.harness import evaluate_model

    tmp = Path(tempfile.mkdtemp(prefix="dtm-evalbench-"))
    model = build_tiny_model_dir(tmp / "model")
    tasks = write_task_dir(tmp / "tasks", n_mc=40, n_gen=4)
    names = ["tiny_mc", "tiny_gen"]

    plain = []
    for _ in range(a.variants):
        t0 = time.perf_counter()
        lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model},dtype=float32",
                                tasks=names, task_manager=TaskManager(include_path=str(tasks)),
                                device="cpu", batch_size=16, log_samples=True)
        plain.append(time.perf_counter() - t0)
    ours = []
    cfg = EvalConfig(tasks=names, include_path=[str(tasks)], batch_size=16)
    for i in range(a.variants):
        t0 = time.perf_counter()
        evaluate_model(model, cfg, tmp / f"v{i}.json", f"v{i}")
        ours.append(time.perf_counter() - t0)
    print("| path | per variant (s) | total for %d variants (s) |\n|---|---|---|" % a.variants)
    print(f"| plain lm-eval, fresh TaskManager | {', '.join(f'{t:.2f}' for t in plain)} | "
          f"{sum(plain):.2f} |")
    print(f"| dtmerge evaluate_model | {', '.join(f'{t:.2f}' for t in ours)} | {sum(ours):.2f} |")


if __name__ == "__main__":
    main()
