"""Results restricted to one part of the validation/test item split (`evaluate/split.py`).

A task's score on a part is recomputed from its per-item results: the mean of the items'
primary-metric scores, or for language-modelling metrics the ratio of the summed parts.
With the split on, every number the report presents is on test items, and it says so.
"""

from __future__ import annotations

from pathlib import Path

from dtmerge.evaluate.split import read_split_file
from dtmerge.report.context import Part, ReportContext
from dtmerge.report.document import Paragraph, Section
from dtmerge.results.records import VariantResult, restrict_variant


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
