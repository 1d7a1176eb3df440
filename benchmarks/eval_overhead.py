"""Fixed cost per evaluated variant: plain lm-eval calls against dtmerge's `evaluate_model`.

Plain: `lm_eval.simple_evaluate(model="hf", ...)` with a fresh `TaskManager(include_path=...)`
per variant (what a script looping over variants does). dtmerge: `evaluate_model`, whose
TaskManager is built once per process and indexes only the local task directories when they
hold every task, and which skips the machine report lm-eval adds to every result (torch's
collect_env: a dozen subprocesses); measured again with that report left on, to show its
share. Same tiny model, same local tasks; N variants evaluated one after another, the two
dtmerge rows interleaved.

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
    import sys

    sys.path.insert(0, str(ROOT / "tests"))  # the tests' tiny-model helpers
    from tiny import build_tiny_model_dir

    # tests/evaluate/conftest.py shares its module name with tests/conftest.py: load by path
    spec = importlib.util.spec_from_file_location("eval_conftest", ROOT / "tests/evaluate/conftest.py")
    eval_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eval_conftest)
    write_task_dir = eval_conftest.write_task_dir
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
    import contextlib

    from dtmerge.evaluate import harness

    ours, with_report = [], []
    cfg = EvalConfig(tasks=names, include_path=[str(tasks)], batch_size=16)
    skip_report = harness._without_machine_report
    for i in range(a.variants):
        for times, skipper in ((ours, skip_report), (with_report, contextlib.nullcontext)):
            harness._without_machine_report = skipper
            t0 = time.perf_counter()
            evaluate_model(model, cfg, tmp / f"v{i}-{len(times)}.json", f"v{i}")
            times.append(time.perf_counter() - t0)
    harness._without_machine_report = skip_report
    print("| path | per variant (s) | total for %d variants (s) |\n|---|---|---|" % a.variants)
    print(f"| plain lm-eval, fresh TaskManager | {', '.join(f'{t:.2f}' for t in plain)} | "
          f"{sum(plain):.2f} |")
    print(f"| dtmerge evaluate_model, lm-eval's machine report on | "
          f"{', '.join(f'{t:.2f}' for t in with_report)} | {sum(with_report):.2f} |")
    print(f"| dtmerge evaluate_model | {', '.join(f'{t:.2f}' for t in ours)} | {sum(ours):.2f} |")


if __name__ == "__main__":
    main()
