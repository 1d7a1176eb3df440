"""Bootstrap draws of every variant's position on every axis, paired across variants.

An axis is the instruction-following mean (x) or one y plane: the knowledge mean, or one
held-out language-modelling loss. Each draw resamples every task's items (stratified: a task
keeps its weight in a mean over tasks) with the SAME resampled items for every variant, so
differences between variants are paired. A variant with several training seeds is scored
by its mean over them (draw 0), so each draw resamples its seeds with replacement and
averages them (a two-stage bootstrap of that mean: seeds, then items). Seeds are paired: replicate k of every variant comes from the
same training seed (an interpolation point of seed k is made from seed k's SFT), so a draw
uses ONE resample of seed labels for all variants that have every label, and a variant that
lacks some resamples its own. Draw 0 is the observed value (all items once, the mean over seeds).

Written by hand with numpy: the decision needs every variant's x and y in the same draw to
read the interpolation line at a resampled x, which no library bootstrap offers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dtmerge.evaluate.lm_loss import RATIO_METRICS
from dtmerge.results.records import VariantResult

CHUNK = 128  # draws computed at once (bounds memory on large benchmarks)


@dataclass(frozen=True)
class Plane:
    """One y axis of a trade-off plane: a mean of accuracy tasks, or one loss task."""

    name: str
    tasks: tuple[str, ...]
    lower_is_better: bool = False

    @property
    def sign(self) -> float:
        """+1 when higher is better: sign * (a - b) > 0 means a is better."""
        return -1.0 if self.lower_is_better else 1.0


X_AXIS = "instruction"


@dataclass
class Draws:
    """axis -> variant -> values of shape (1 + n_boot,); index 0 is the observed value."""

    values: dict[str, dict[str, np.ndarray]]
    items: dict[str, int]  # task -> paired items used
    seeds: dict[str, int]  # variant -> training seeds it rests on
    n_boot: int
    dropped: dict[str, str] = field(default_factory=dict)  # variant -> why it is left out

    def of(self, axis: str, variant: str) -> np.ndarray:
        return self.values[axis][variant]

    @property
    def variants(self) -> list[str]:
        return list(self.values[X_AXIS])


def _task_matrix(replicates: dict[str, list[VariantResult]], task: str, ids: list):
    """(kind, arrays) of one task over every (variant, seed) row: mean scores, or ratio parts."""
    first = next(iter(replicates.values()))[0].tasks[task]
    rows = [r.tasks[task] for reps in replicates.values() for r in reps]
    if first.metric in RATIO_METRICS and all(r.parts for r in rows):
        num = np.array([[r.parts[i][0] for i in ids] for r in rows], dtype=float)
        den = np.array([[r.parts[i][1] for i in ids] for r in rows], dtype=float)
        return "ratio", (num, den, RATIO_METRICS[first.metric].transform)
    return "mean", (np.array([[r.items[i] for i in ids] for r in rows], dtype=float),)


def _common_ids(replicates: dict[str, list[VariantResult]], task: str) -> list:
    sets = []
    for reps in replicates.values():
        for r in reps:
            t = r.tasks[task]
            sets.append(set(t.parts) if t.metric in RATIO_METRICS and t.parts else set(t.items))
    return sorted(set.intersection(*sets), key=lambda k: (str(type(k)), str(k)))


def _resampled(kind: str, arrays: tuple, n: int, rows: int, n_boot: int,
               rng: np.random.Generator) -> np.ndarray:
    """(rows, 1 + n_boot): each row's task statistic on the observed items, then on n_boot
    resamples of them (the same resampled items for every row: paired).

    A resample is a vector of counts (how often each item is drawn), from n uniform draws
    with np.bincount (faster than rng.multinomial at benchmark sizes); the statistics are
    then small matrix products, run on one BLAS thread: on a busy machine, BLAS threads
    waiting for a core cost more than these products (measured: 1.3-1.9 s vs 0.03 s).
    """
    from threadpoolctl import threadpool_limits

    out = np.empty((rows, 1 + n_boot))
    with threadpool_limits(1):
        for start in range(0, 1 + n_boot, CHUNK):
            size = min(start + CHUNK, 1 + n_boot) - start
            picks = rng.integers(0, n, size=(size, n)) + np.arange(size)[:, None] * n
            counts = np.bincount(picks.ravel(), minlength=size * n).reshape(size, n).astype(float)
            if start == 0:
                counts[0] = 1.0  # draw 0: the observed items, each once
            if kind == "mean":
                out[:, start:start + size] = arrays[0] @ counts.T / n
            else:
                num, den, transform = arrays
                out[:, start:start + size] = transform((num @ counts.T) / (den @ counts.T))
    return out


def _seed_picks(kept: dict[str, list[VariantResult]], n_boot: int, rng: np.random.Generator
                ) -> dict[str, np.ndarray | None]:
    """Variant -> replicate indices of each draw, shape (seeds, n_boot): the draw's value is
    their mean (None: one replicate, always it).

    One resample of seed labels per draw serves every variant that has all the labels
    (paired seeds); a variant without some resamples its own. Picks are shared by all axes,
    so x and y stay paired.
    """
    labels = sorted({r.seed for reps in kept.values() for r in reps})
    shared = np.asarray(labels)[rng.integers(0, len(labels), size=(len(labels), n_boot))]
    picks: dict[str, np.ndarray | None] = {}
    for name, reps in kept.items():
        if len(reps) == 1:
            picks[name] = None
            continue
        index = {r.seed: i for i, r in enumerate(reps)}
        own = rng.integers(0, len(reps), size=(len(reps), n_boot))  # a stable stream
        if len(index) == len(reps) and sorted(index) == labels:
            lookup = np.zeros(labels[-1] + 1, dtype=np.int64)  # seed label -> replicate
            lookup[list(index)] = list(index.values())
            picks[name] = lookup[shared]
        else:
            picks[name] = own
    return picks


def draw(replicates: dict[str, list[VariantResult]], instruction: list[str],
         planes: list[Plane], n_boot: int = 2000, seed: int = 0) -> Draws:
    """Every variant's x (instruction mean) and y on each plane, observed and resampled.

    A variant (or one of its seeds) missing a task is left out (recorded in `dropped`): a
    partial mean is not comparable. Raises ValueError when no task has paired items.
    """
    axes = {X_AXIS: list(instruction), **{p.name: list(p.tasks) for p in planes}}
    needed = sorted({t for ts in axes.values() for t in ts})
    dropped = {}
    kept = {}
    for name, reps in replicates.items():
        missing = sorted({t for r in reps for t in needed if t not in r.tasks})
        if missing:
            dropped[name] = f"not scored on {', '.join(missing)}"
        else:
            kept[name] = reps
    if not kept or not needed:
        raise ValueError("no variant has every task of the decision's axes")
    rows = [(name, s) for name, reps in kept.items() for s in range(len(reps))]
    rng = np.random.default_rng(seed)
    task_stats: dict[str, np.ndarray] = {}  # task -> (rows, 1 + n_boot)
    items = {}
    for task in needed:
        ids = _common_ids(kept, task)
        if not ids:
            raise ValueError(f"task {task}: no item is scored for every variant")
        items[task] = len(ids)
        kind, arrays = _task_matrix(kept, task, ids)
        task_stats[task] = _resampled(kind, arrays, len(ids), len(rows), n_boot, rng)
    picks = _seed_picks(kept, n_boot, rng)
    values: dict[str, dict[str, np.ndarray]] = {}
    for axis, tasks in axes.items():
        per_row = np.mean([task_stats[t] for t in tasks], axis=0)  # (rows, 1 + n_boot)
        values[axis] = {}
        for name, reps in kept.items():
            idx = [i for i, (n, _) in enumerate(rows) if n == name]
            block = per_row[idx]
            v = np.empty(1 + n_boot)
            v[0] = block[:, 0].mean()
            v[1:] = block[0, 1:] if picks[name] is None else \
                block[picks[name], np.arange(1, 1 + n_boot)].mean(axis=0)
            values[axis][name] = v
    return Draws(values, items, {n: len(r) for n, r in kept.items()}, n_boot, dropped)
