"""Cost of the decision's bootstrap on benchmark-sized results, beside the report's per-pair one.

Usage: python benchmarks/decision_bootstrap.py [--draws 2000] [--methods 7]

The decision draws every variant's instruction score and its y on every plane in the same
resampled items (so the line can be read at a resampled x); the peer is what the Answer
computed before: one stratified paired bootstrap per method and axis against SFT
(`evaluate.stats.stratified_paired_bootstrap`). Synthetic results at paper scale: MMLU-sized
(14,042 items) and BBH-sized (6,511) knowledge tasks, an IFEval-sized (541) instruction
task and 500 held-out loss documents; base, SFT, three interpolation points and `--methods`
methods. Prints wall seconds of each, their ratio and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from dtmerge.decision.draws import Plane, draw
from dtmerge.decision.rule import Settings, decide
from dtmerge.evaluate.stats import stratified_paired_bootstrap
from dtmerge.results.records import TaskResult, VariantResult

TASKS = {"mmlu": ("knowledge", 14042), "bbh": ("knowledge", 6511),
         "ifeval": ("instruction", 541)}


def synthetic(names: list[str], seed: int = 0) -> dict[str, list[VariantResult]]:
    rng = np.random.default_rng(seed)
    difficulty = {t: rng.random(n) for t, (_, n) in TASKS.items()}
    nll = rng.uniform(0.6, 1.4, 500)
    out = {}
    for k, name in enumerate(names):
        tasks = {}
        for t, (cat, n) in TASKS.items():
            p = 0.3 + 0.4 * rng.random()
            items = (difficulty[t] + 0.1 * rng.standard_normal(n) < p).astype(float)
            tasks[t] = TaskResult(t, "acc", float(items.mean()), None, n, cat,
                                  items=dict(enumerate(items.tolist())))
        loss = nll + 0.01 * k + 0.001 * rng.standard_normal(500)
        parts = {i: (float(loss[i] * 300), 300.0) for i in range(500)}
        tasks["heldout"] = TaskResult("heldout", "bits_per_byte", float(loss.mean()), None, 500,
                                      "language_modeling", items={i: float(v) for i, v in
                                                                  enumerate(loss)},
                                      higher_is_better=False, parts=parts)
        out[name] = [VariantResult(name, None, None, {}, tasks)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--methods", type=int, default=7)
    args = ap.parse_args()
    line = {"base": 0.0, "interp_0.25": 0.25, "interp_0.5": 0.5, "interp_0.75": 0.75, "sft": 1.0}
    methods = [f"method_{i}" for i in range(args.methods)]
    reps = synthetic([*line, *methods])
    planes = [Plane("knowledge", ("mmlu", "bbh")), Plane("loss on heldout", ("heldout",), True)]
    print(f"load average before: {os.getloadavg()[0]:.2f}; {len(reps)} variants, "
          f"{sum(n for _, n in TASKS.values()) + 500} items, {args.draws} draws", flush=True)

    t0 = time.perf_counter()
    draws = draw(reps, ["ifeval"], planes, n_boot=args.draws, seed=0)
    decision = decide(draws, methods, line, planes, Settings())
    t_decision = time.perf_counter() - t0

    t0 = time.perf_counter()
    sft = reps["sft"][0]
    for m in methods:
        v = reps[m][0]
        for tasks in (("mmlu", "bbh"), ("ifeval",)):
            diffs = [[v.tasks[t].items[i] - sft.tasks[t].items[i] for i in sft.tasks[t].items]
                     for t in tasks]
            stratified_paired_bootstrap(diffs, n_boot=args.draws, seed=0)
    t_peer = time.perf_counter() - t0

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"decision (every variant, x and 2 planes, line read per draw): {t_decision:.2f} s "
          f"-> {decision.choice}")
    print(f"peer (stratified paired bootstrap, {len(methods)} methods x 2 axes vs SFT): "
          f"{t_peer:.2f} s")
    print(f"ratio decision / peer: {t_decision / t_peer:.2f}; peak RSS {peak:.0f} MB; "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
