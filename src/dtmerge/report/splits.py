"""Results restricted to one part of the validation/test item split (`evaluate/split.py`).

A task's score on a part is recomputed from its per-item results: the mean of the items'
primary-metric scores, or for language-modelling metrics the ratio of the summed parts.
With the split on, every number the report presents is on test items, and it says so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dtmerge.evaluate.lm_loss import RATIO_METRICS, ratio_value
from dtmerge.evaluate.split import ItemSplit, read_split_file
from dtmerge.evaluate.stats import standard_error
from dtmerge.report.context import Part, ReportContext
from dtmerge.report.document import Paragraph, Section
from dtmerge.report.results import ReportError, TaskResult, VariantResult


def restrict_task(task: TaskResult, split: ItemSplit, part: str) -> TaskResult:
    """`task` with only the items of `part`; score, standard error and n recomputed."""
    keep = set(split.ids(task.name, list(task.items) + list(task.parts), part))
    items = {d: s for d, s in task.items.items() if d in keep}
    parts = {d: p for d, p in task.parts.items() if d in keep}
    if parts and task.metric in RATIO_METRICS:
        score = ratio_value(task.metric, [p[0] for p in parts.values()],
                            [p[1] for p in parts.values()])
    elif items:
        score = sum(items.values()) / len(items)
    else:
        raise ReportError(f"task {task.name}: no {part} items (of {len(task.items)}); raise "
                          "eval.validation_fraction's share of that part or score more items")
    return dataclasses.replace(
        task, score=float(score), items=items, parts=parts, n=len(items) or len(parts),
        stderr=standard_error(list(items.values())) if not parts else None, interval=None,
        preds={d: p for d, p in task.preds.items() if d in keep})


def restrict_variant(variant: VariantResult, split: ItemSplit, part: str) -> VariantResult:
    return dataclasses.replace(variant, tasks={n: restrict_task(t, split, part)
                                               for n, t in variant.tasks.items()})


def on_test_split(eval_dir: Path, variants: dict[str, VariantResult]
                  ) -> tuple[dict[str, VariantResult], list[Section]]:
    """The variants on the run's test items when the evaluate stage recorded a split, and a
    section saying which items the numbers are on (nothing changes without a split)."""
    split = read_split_file(eval_dir)
    if split is None:
        return variants, []
    restricted = {n: restrict_variant(v, split, "test") for n, v in variants.items()}
    note = Paragraph(
        f"Every score in this report is on the TEST items: eval.validation_fraction = "
        f"{split.fraction:g} of each task's items (by a hash of item id and split seed "
        f"{split.seed}) are held out as validation items, on which choices such as "
        "`dtm frontier`'s candidate are made, and are excluded from these numbers.")
    return restricted, [Section("Validation and test items", [note])]


def split_note_part(ctx: ReportContext) -> Part:
    """The report's first words when the split is on: which items its numbers are on."""
    return Part(tuple(ctx.split_notes))
