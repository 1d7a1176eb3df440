"""Assemble the alignment-tax report of a run directory from its files.

`build_report` reads eval/*.json once into a `ReportContext`, calls every builder in
`SECTION_BUILDERS` in order, and joins what they return: the document sections, the JSON
summary (each builder owns its keys) and the terminal summary table.

To add a section: write one function `my_section(ctx: ReportContext) -> Part` in a module of
`report/sections/` and add it to `SECTION_BUILDERS` where it should appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dtmerge.report.sections.answer import answer_section
from dtmerge.report.context import Part, ReportContext, SectionBuilder, fmt
from dtmerge.report.document import Section, Table
from dtmerge.report.sections.frontier import frontier_part
from dtmerge.report.sections.lm_loss import lm_loss_section
from dtmerge.report.sections.lm_tradeoff import lm_tradeoff_section
from dtmerge.report.sections.recipes import recipes_section
from dtmerge.report.splits import on_test_split, split_note_part
from dtmerge.results.records import (
    ReportError, higher_is_better, lm_loss_tasks, load_eval_dir, split_tasks,
)
from dtmerge.report.sections.run import (
    bias_measures_section, error_set_section, monitor_section, settings_section, timings_section,
)
from dtmerge.report.sections.scores import dtm_vs_sft_section, scores_section
from dtmerge.report.sections.tradeoff import tradeoff_section
from dtmerge.rundir import RunDir

SECTION_BUILDERS: list[SectionBuilder] = [
    answer_section,  # the answer first; it says when its numbers are on test items
    split_note_part,
    scores_section,
    lm_loss_section,
    dtm_vs_sft_section,
    tradeoff_section,
    lm_tradeoff_section,
    recipes_section,
    frontier_part,
    error_set_section,
    bias_measures_section,
    monitor_section,
    timings_section,
    settings_section,
]


@dataclass
class Report:
    title: str
    sections: list[Section]
    summary: Table
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def answer(self) -> list[str]:
        """The Answer block's sentences (empty when there is none)."""
        return list((self.data.get("answer") or {}).get("sentences") or [])


def load_context(run: RunDir, knowledge: list[str] | None = None,
                 instruction: list[str] | None = None, n_boot: int = 2000,
                 seed: int = 0, answer=None, split_seed: int = 0) -> ReportContext:
    """Read a run's evaluation results into the context every section builder gets.

    Raises:
        ReportError: no evaluation results, or a malformed result file.
    """
    eval_dir = run.root / "eval"
    variants = load_eval_dir(eval_dir) if eval_dir.is_dir() else {}
    variants, split_sections = on_test_split(eval_dir, variants)  # test items when split
    if not variants:
        raise ReportError(
            f"no evaluation results in {eval_dir}: run `dtm eval` on this run first "
            "(the report reads eval/<variant>.json)"
        )
    know, instr = split_tasks(variants, knowledge, instruction)
    return ReportContext(run, variants, know, instr, lm_loss_tasks(variants),
                         requested_knowledge=knowledge, requested_instruction=instruction,
                         n_boot=n_boot, seed=seed, split_notes=tuple(split_sections),
                         answer=answer, split_seed=split_seed)


def join_parts(parts: list[Part]) -> tuple[list[Section], dict[str, Any]]:
    """Sections in order and the union of the parts' data (a key owned twice is a bug)."""
    sections: list[Section] = []
    data: dict[str, Any] = {}
    for part in parts:
        sections += part.sections
        clash = set(part.data) & set(data)
        if clash:
            raise RuntimeError(f"two report sections both write report.json keys {sorted(clash)}")
        data.update(part.data)
    return sections, data


def build_report(run: RunDir, knowledge: list[str] | None = None, instruction: list[str] | None = None,
                 n_boot: int = 2000, seed: int = 0,
                 builders: list[SectionBuilder] | None = None, answer=None,
                 split_seed: int = 0) -> Report:
    """Read a run directory's files and assemble the report.

    Args:
        run: the run directory (eval/, manifest.json, models/*/monitor.jsonl are read).
        knowledge, instruction: task lists (cfg.report); empty means "by recorded category".
        n_boot, seed: paired bootstrap settings.
        builders: the section builders to run (default `SECTION_BUILDERS`).
        answer, split_seed: cfg.answer and cfg.eval.split_seed, the decision's settings.

    Raises:
        ReportError: no evaluation results, or a malformed result file.
    """
    ctx = load_context(run, knowledge, instruction, n_boot, seed, answer, split_seed)
    overview = {"variants": ctx.names, "tasks": ctx.tasks, "knowledge_tasks": ctx.knowledge,
                "instruction_tasks": ctx.instruction, "lm_loss_tasks": ctx.lm_tasks,
                "higher_is_better": {t: higher_is_better(ctx.variants, t) for t in ctx.tasks}}
    parts = [Part(data=overview)] + [build(ctx) for build in (builders or SECTION_BUILDERS)]
    sections, data = join_parts(parts)
    return Report(f"Alignment-tax report: {run.root.name}", sections, summary_table(ctx), data)


def summary_table(ctx: ReportContext) -> Table:
    """The terminal table: scores per variant and DTM minus SFT with its significance."""
    diffs = ctx.compare("sft", "dtm") if {"sft", "dtm"} <= set(ctx.variants) else {}
    rows = []
    for t in ctx.tasks:
        row = [ctx.header(t)] + [fmt(ctx.variants[n].tasks[t].score) if t in ctx.variants[n].tasks
                                 else "-" for n in ctx.names]
        d = diffs.get(t)
        row.append(f"{d.mean:+.3f} {d.mark() or 'n.s.'}" if d else "-")
        rows.append(row)
    return Table(["benchmark"] + ctx.names + ["dtm−sft"], rows, "Scores per variant")
