"""Validation and test items: every evaluation task split deterministically into two parts.

An item belongs to the validation part when a hash of (seed, task, item id) falls below
`fraction`; everything else is test. The item id is lm-eval's doc_id (the document's index
in the task's evaluation docs; `leaf:index` for a group's member tasks), so the split depends
on nothing but the task, the item and the seed: it is the same in every run, for every model,
and whichever subset of items was scored. Knobs chosen by scores (the frontier's candidate)
are chosen on validation items; the numbers presented as results are computed on test items.

The split is applied to per-item results (eval/<variant>.json keeps every item's score), and
`doc_indices` gives the indices of one part for lm-eval's `samples=` (to score only them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from dtmerge.rundir import atomic_write_json, damaged_state, read_state_json, rerun_hint

SPLIT_FILE = "split.json"  # eval/split.json: the run's split, read by the report
PARTS = ("validation", "test")
# EvalConfig keys that choose items after scoring, not what is scored: kept out of the eval
# fingerprint, so turning the split on does not re-evaluate anything.
SPLIT_KEYS = ("validation_fraction", "split_seed")


@dataclass(frozen=True)
class ItemSplit:
    """`fraction` of each task's items are validation (by hash of seed, task, item id)."""

    fraction: float
    seed: int = 0

    def part(self, task: str, doc_id: Any) -> str:
        digest = hashlib.sha256(f"{self.seed}|{task}|{doc_id}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
        return "validation" if u < self.fraction else "test"

    def ids(self, task: str, doc_ids: Iterable[Any], part: str) -> list[Any]:
        """The ids of `doc_ids` in `part`, in the given order."""
        if part not in PARTS:
            raise ValueError(f"split part must be one of {PARTS}, got {part!r}")
        return [d for d in doc_ids if self.part(task, d) == part]

    def to_json(self) -> dict:
        return {"validation_fraction": self.fraction, "seed": self.seed}


def split_of(eval_cfg) -> ItemSplit | None:
    """The split an `EvalConfig` asks for (None when `validation_fraction` is unset)."""
    if not eval_cfg.validation_fraction:
        return None
    return ItemSplit(float(eval_cfg.validation_fraction), int(eval_cfg.split_seed))


def read_split_file(eval_dir: Path) -> ItemSplit | None:
    """The split recorded in `eval_dir/split.json` by the evaluate stage, if any."""

    path = Path(eval_dir) / SPLIT_FILE
    if not path.is_file():
        return None
    recover = rerun_hint(f"dtm eval {Path(eval_dir).parent}")
    data = read_state_json(path, recover)
    try:
        return ItemSplit(float(data["validation_fraction"]), int(data.get("seed", 0)))
    except (KeyError, TypeError, ValueError):
        raise damaged_state(path, "no numeric 'validation_fraction'", recover) from None


def record_split(eval_cfg, eval_dir: Path) -> None:
    """Write (or remove, when the split is off) `eval_dir/split.json` for the report."""
    split = split_of(eval_cfg)
    path = Path(eval_dir) / SPLIT_FILE
    if split is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_json(path, split.to_json())


def doc_indices(split: ItemSplit, task_items: dict[str, list[Any]], part: str,
                ) -> dict[str, list[int]]:
    """lm-eval `samples=`: per leaf task, the sorted doc indices of `part`.

    `task_items` maps each configured task to the doc_ids its result lists (`leaf:index` for
    members of a group, plain indices otherwise), e.g. from the run's own eval files.
    """
    out: dict[str, list[int]] = {}
    for task, ids in task_items.items():
        for doc_id in split.ids(task, ids, part):
            leaf, _, index = str(doc_id).rpartition(":")
            out.setdefault(leaf or task, []).append(int(index))
    return {leaf: sorted(set(ix)) for leaf, ix in out.items()}
