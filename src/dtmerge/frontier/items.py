"""Which items the frontier scores, and where a scored model lies on the trade-off plane.

The items are those of the run's own evaluation (eval/<variant>.json lists every scored
item), split by `eval.validation_fraction`: candidates are chosen on validation items (a cheap
first pass on a subsample of them), and only the chosen one is scored on test items.
"""

from __future__ import annotations

import dataclasses

from dtmerge.errors import ConfigError
from dtmerge.evaluate.split import ItemSplit, doc_indices, split_of
from dtmerge.results.analysis import TradeoffPoint, tradeoff_points
from dtmerge.results.records import VariantResult, restrict_variant, split_tasks
from dtmerge.rundir import RunDir, read_state_json, rerun_hint

REFERENCE_VARIANTS = ("sft", "dtm", "base")  # whose eval file lists the run's items
PRUNE_SEED = 7919  # the first pass's subsample of validation items: its own hash stream


def run_split(cfg) -> ItemSplit:
    split = split_of(cfg.eval)
    if split is None:
        raise ConfigError("dtm frontier chooses on validation items: set eval.validation_fraction "
                          "(e.g. `dtm frontier RUN eval.validation_fraction=0.5`); the report "
                          "then presents test-item numbers")
    return split


def run_items(run: RunDir) -> dict[str, list]:
    """Task -> the item ids the run's evaluation scored (from its first reference variant)."""
    for name in REFERENCE_VARIANTS:
        path = run.eval_file(name)
        if path.is_file():
            tasks = read_state_json(path, rerun_hint(f"dtm eval {run.root}")).get("tasks", {})
            return {t: [it["doc_id"] for it in r.get("items") or []] for t, r in tasks.items()}
    raise ConfigError(f"{run.root}: no eval/sft.json, eval/dtm.json or eval/base.json; run "
                      "`dtm eval` on this run first (the frontier scores the same items)")


def pass_items(split: ItemSplit, items: dict[str, list], which: str,
               prune_fraction: float | None = None) -> dict[str, list]:
    """Task -> item ids of a pass: "prune" (a subsample of validation), "validation", "test"."""
    part = "test" if which == "test" else "validation"
    out = {t: split.ids(t, ids, part) for t, ids in items.items()}
    if which == "prune" and prune_fraction is not None and prune_fraction < 1.0:
        sub = ItemSplit(prune_fraction, PRUNE_SEED + split.seed)
        out = {t: sub.ids(t, ids, "validation") or ids[:1] for t, ids in out.items()}
    empty = [t for t, ids in out.items() if not ids]
    if empty:
        raise ConfigError(f"task(s) {', '.join(empty)} have no {part} items at "
                          f"eval.validation_fraction={split.fraction:g}: score more items or "
                          "move the fraction toward 0.5")
    return out


def samples_of(items: dict[str, list]) -> dict[str, list[int]]:
    """lm-eval `samples=` for the given ids (every id in one part: the split is identity)."""
    return doc_indices(ItemSplit(1.0), items, "validation")


def points(results: dict[str, VariantResult], items: dict[str, list],
           cfg) -> dict[str, TradeoffPoint]:
    """Every result's (instruction, knowledge) point on exactly the items of `items`."""
    only = ItemsOnly({t: frozenset(map(str, ids)) for t, ids in items.items()})
    restricted = {n: restrict(r, only) for n, r in results.items()}
    know, instr = split_tasks(restricted, cfg.report.knowledge_tasks, cfg.report.instruction_tasks)
    return {p.variant: p for p in tradeoff_points(restricted, know, instr)}


def restrict(result: VariantResult, only: "ItemsOnly") -> VariantResult:
    """`result` on the tasks and items of `only`."""
    kept = dataclasses.replace(result, tasks={t: r for t, r in result.tasks.items()
                                              if t in only.items})
    return restrict_variant(kept, only, "validation")


class ItemsOnly(ItemSplit):
    """A split whose "validation" part is exactly the given item ids per task."""

    def __init__(self, items: dict[str, frozenset]):
        super().__init__(1.0, 0)
        object.__setattr__(self, "items", items)

    def part(self, task, doc_id):
        return "validation" if str(doc_id) in self.items.get(task, ()) else "test"

