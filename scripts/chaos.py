"""Long fault-injection run by hand: SIGKILL a tiny `dtm run` many times, rerun, compare.

    PYTHONPATH=src python scripts/chaos.py --kills 200 [--external 20] [--minutes 10] [--seed 0]

--kills N: N kills at seeded fault points (every manifest update, atomic write and directory
swap, merged tensor, training log step), in forked children, chained reruns (see
tests/faults/faultlib.py). --external M: M more kills sent from outside to a `dtm run`
subprocess at random wall-clock times, which also land inside libraries' own writes (a
transformers checkpoint being saved, an lm-eval call). Every kill is followed by a rerun;
after each, no job may be marked done with an output different from an uninterrupted run's,
and each chain must end bit-identical to it. Prints one summary line for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "faults")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from faultlib import (ChaosReport, _check_done_outputs, _finish_chain, chaos,  # noqa: E402
                      reference_run, warm_imports, write_inputs)


def external_kills(cfg: Path, work: Path, kills: int, seed: int, reference: dict,
                   deadline: float, log) -> ChaosReport:
    """Kill `dtm run` subprocesses from outside at random times; rerun until each finishes."""
    import yaml

    rng = random.Random(seed + 1)
    runs_dir = Path(yaml.safe_load(cfg.read_text())["runs_dir"])
    report = ChaosReport()
    command = [sys.executable, "-m", "dtmerge.cli.main", "run", str(cfg)]
    started = time.time()
    full = subprocess.run(command + ["name=timing"], capture_output=True, env=os.environ)
    if full.returncode != 0:
        raise RuntimeError(full.stderr.decode()[-2000:])
    span = time.time() - started  # one uninterrupted run, imports included
    started = time.time()
    subprocess.run([sys.executable, "-c", "import torch, transformers, trl, peft, lm_eval; "
                    "import dtmerge.pipeline"], check=True)
    imports = time.time() - started  # a kill before this lands before any work: skip it
    while report.kills_tried < kills and time.time() < deadline:
        name = f"external{report.chains}"
        while report.kills_tried < kills and time.time() < deadline:
            with open(work / f"{name}.log", "ab") as out:
                proc = subprocess.Popen(command + [f"name={name}"], stdout=out, stderr=out)
                try:
                    proc.wait(timeout=rng.uniform(imports, span))
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            report.kills_tried += 1
            report.reruns += 1
            _check_done_outputs(runs_dir / name, reference, report, f"{name} kill")
            if proc.returncode == -signal.SIGKILL:
                report.kills_landed += 1
            else:
                break  # finished on its own before the kill: this chain is done
        _finish_chain(cfg, runs_dir, name, work, reference, report, log)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200, help="kills at seeded fault points")
    parser.add_argument("--external", type=int, default=0, help="kills at random times")
    parser.add_argument("--minutes", type=float, default=60.0, help="stop starting new kills after")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="working directory (default: a temporary one)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    work = Path(args.work or tempfile.mkdtemp(prefix="dtm-chaos-"))
    deadline = time.time() + 60 * args.minutes
    cfg = write_inputs(work)
    warm_imports(cfg)
    reference, labels = reference_run(cfg, work)
    print(f"[chaos] reference run: {len(labels)} fault points; work dir {work}", flush=True)
    inside = chaos(cfg, work, args.kills, args.seed, reference, labels, deadline,
                   log=lambda m: print(m, flush=True))
    print(f"fault-point kills: {inside.line()}\n  per interrupted job: {inside.where()}")
    reports = [inside]
    if args.external:
        outside = external_kills(cfg, work, args.external, args.seed, reference, deadline,
                                 log=lambda m: print(m, flush=True))
        print(f"external kills: {outside.line()}")
        reports.append(outside)
    lost = [x for r in reports for x in r.outputs_lost + r.failures]
    for line in lost:
        print("LOST:", line)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
