"""What every report section builder reads, and what it returns.

`build_report` loads a run's results once into a `ReportContext` and calls each section
builder in `SECTION_BUILDERS` with it. A builder returns a `Part`: its sections and its own
keys for report.json. Builders never write into shared state; the only state the context
keeps is a cache of paired comparisons, so two sections asking for the same comparison do
not bootstrap it twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from dtmerge.evaluate.stats import PairedDiff
from dtmerge.results.analysis import TaxCell, compare_variants, tax_table
from dtmerge.report.document import Section
from dtmerge.results.records import VariantResult, all_tasks, interp_t, sub_index, task_category
from dtmerge.rundir import RunDir


@dataclass(frozen=True)
class Part:
    """One builder's contribution: sections in reading order and report.json keys."""

    sections: tuple[Section, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, section: Section | None, **data: Any) -> "Part":
        return cls((section,) if section is not None else (), data)


@dataclass
class ReportContext:
    """The loaded results of one run and the report settings.

    Attributes:
        run: the run directory.
        variants: variant name -> results, in report order.
        knowledge, instruction: tasks averaged on each axis of the trade-off.
        lm_tasks: lower-is-better language-modelling tasks (never averaged with accuracies).
        requested_knowledge, requested_instruction: the lists named in cfg.report, if any.
        n_boot, seed: paired bootstrap settings.
    """

    run: RunDir
    variants: dict[str, VariantResult]
    knowledge: list[str]
    instruction: list[str]
    lm_tasks: list[str]
    requested_knowledge: list[str] | None = None
    requested_instruction: list[str] | None = None
    n_boot: int = 2000
    seed: int = 0
    split_notes: tuple[Section, ...] = ()  # says which items the numbers are on, when split
    answer: Any = None  # cfg.answer (AnswerConfig): the target of the decision; None: defaults
    split_seed: int = 0  # seed of the decision's own split when the run has none
    _diffs: dict[tuple[str, str], dict[str, PairedDiff]] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        return list(self.variants)

    @property
    def tasks(self) -> list[str]:
        return all_tasks(self.variants)

    @property
    def eval_dir(self) -> Path:
        return self.run.root / "eval"

    @cached_property
    def tax(self) -> dict[str, dict[str, TaxCell]]:
        """task -> variant -> score and tax against base (see `analysis.tax_table`)."""
        return tax_table(self.variants, self.tasks, self.n_boot, self.seed)

    @cached_property
    def line_intervals(self) -> dict[str, dict[str, tuple[float, float, float]]]:
        """Variant -> plane ("knowledge", "loss on <task>") -> (distance, low, high) to the
        base→SFT line on the report's items: paired bootstrap with each variant's own x
        resampled in the same draws (`dtmerge.decision`), > 0 on the better side. Empty
        without a line of at least three points."""
        from dtmerge.decision.confirm import distances_to_line
        from dtmerge.decision.inputs import group_seeds, line_points, planes_of

        instr, planes = planes_of(self.variants, self.requested_knowledge,
                                  self.requested_instruction)
        replicates = group_seeds(self.variants)
        line = line_points(self.run, list(replicates))
        if not instr or not planes:
            return {}
        try:
            found = distances_to_line(replicates, line, instr, planes, list(replicates),
                                      self.n_boot, self.seed)
        except ValueError:  # no variant has every task of the planes
            return {}
        return {n: {p: (iv.value, iv.low, iv.high) for p, iv in d.items()}
                for n, d in found.items()}

    def line_interval(self, variant: str, plane: str) -> tuple[float, float, float] | None:
        return self.line_intervals.get(variant, {}).get(plane)

    def compare(self, a: str, b: str) -> dict[str, PairedDiff]:
        """Per-task b - a, paired on shared items; computed once per pair."""
        key = (a, b)
        if key not in self._diffs:
            self._diffs[key] = compare_variants(self.variants[a], self.variants[b],
                                                self.n_boot, self.seed)
        return self._diffs[key]

    @property
    def knowledge_label(self) -> str:
        """What the knowledge axis averages, named by the categories it holds: "knowledge",
        or "knowledge & reasoning" when reasoning tasks are averaged in."""
        cats = []
        for t in self.knowledge:
            cat = task_category(self.variants, t)
            cat = cat if cat in ("knowledge", "reasoning") else "other"
            if cat not in cats:
                cats.append(cat)
        order = {"knowledge": 0, "reasoning": 1, "other": 2}
        return " & ".join(sorted(cats, key=order.get)) or "knowledge"

    def header(self, task: str) -> str:
        """Column title: the task, plus its metric and direction when lower is better."""
        return task_header(self.variants, task)


SectionBuilder = Callable[[ReportContext], Part]


# ----------------------------------------------------------------------------- formatting


def fmt(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_diff(d: PairedDiff | None) -> str:
    if d is None:
        return "-"
    return f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{(' ' + d.mark()) if d.mark() else ''}"


def task_header(variants: dict[str, VariantResult], task: str) -> str:
    for v in variants.values():
        r = v.tasks.get(task)
        if r is not None and not r.higher_is_better:
            return f"{task}: {r.label}"
    return task


def mean_score(v: VariantResult, tasks: list[str]) -> float | None:
    """Mean of `tasks` for one variant; None when any is missing (a partial mean misleads)."""
    if not tasks or not all(t in v.tasks for t in tasks):
        return None
    return float(np.mean([v.tasks[t].score for t in tasks]))


def is_method(name: str) -> bool:
    """A candidate to ship, not a reference: anything but base, SFT, the interpolation line
    (interp_<t>) and the sub-models (sub_<k>): dtm, dtm_*, recipes, best checkpoints."""
    return name not in ("base", "sft") and interp_t(name) is None and sub_index(name) is None
