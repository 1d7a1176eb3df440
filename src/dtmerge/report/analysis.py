"""The alignment-tax analyses: tax table, DTM vs SFT, the trade-off line, error sets.

Every function takes loaded `VariantResult`s and returns plain data that the renderers turn
into Markdown, HTML and terminal tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dtmerge.report.results import TaskResult, VariantResult, interp_t, sub_index
from dtmerge.evaluate.lm_loss import RATIO_METRICS
from dtmerge.evaluate.stats import PairedDiff, paired_by_id, paired_ratio_by_id, unpaired_normal

CORRECT_AT = 0.5  # an item counts as answered correctly when its primary score is >= this


def diff_tasks(a: TaskResult, b: TaskResult, n_boot: int = 2000, seed: int = 0) -> PairedDiff:
    """b - a on one benchmark, in the metric's units, with the metric's direction recorded.

    Paired bootstrap on shared doc_ids: of the mean for mean-aggregated metrics, of the ratio
    of sums for language-modelling metrics (bits per byte, perplexity), whose per-document
    values must not be averaged; a normal interval when items cannot be paired.
    """
    higher = b.higher_is_better
    if a.metric in RATIO_METRICS and a.metric == b.metric:
        if a.parts and b.parts:
            paired = paired_ratio_by_id(a.parts, b.parts, RATIO_METRICS[a.metric].transform,
                                        higher_is_better=higher, n_boot=n_boot, seed=seed)
            if paired is not None:
                return paired
    elif a.items and b.items:
        paired = paired_by_id(a.items, b.items, higher_is_better=higher, n_boot=n_boot, seed=seed)
        if paired is not None:
            return paired
    return unpaired_normal(a.score, a.stderr, b.score, b.stderr, n=min(a.n or 0, b.n or 0),
                           higher_is_better=higher)


def compare_variants(
    a: VariantResult, b: VariantResult, n_boot: int = 2000, seed: int = 0
) -> dict[str, PairedDiff]:
    """Per-benchmark b - a for every benchmark both variants were scored on."""
    return {
        task: diff_tasks(a.tasks[task], b.tasks[task], n_boot, seed)
        for task in a.tasks
        if task in b.tasks
    }


@dataclass
class TaxCell:
    score: float
    stderr: float | None
    tax: float | None  # variant minus base, in the metric's units (see higher_is_better)
    tax_diff: PairedDiff | None  # paired interval of the tax
    higher_is_better: bool = True  # False: a positive tax is a loss (bits per byte)


def tax_table(
    variants: dict[str, VariantResult], tasks: list[str], n_boot: int = 2000, seed: int = 0
) -> dict[str, dict[str, TaxCell]]:
    """task -> variant -> score, stderr and tax (variant minus base) with its interval.

    The tax keeps the metric's units and sign: for a lower-is-better metric a positive value is
    the loss; `TaxCell.higher_is_better` and the interval's marks say which way is worse.
    """
    base = variants.get("base")
    table: dict[str, dict[str, TaxCell]] = {}
    for task in tasks:
        row = {}
        for name, v in variants.items():
            if task not in v.tasks:
                continue
            r = v.tasks[task]
            b = base.tasks.get(task) if base else None
            diff = diff_tasks(b, r, n_boot, seed) if b is not None and name != "base" else None
            tax = r.score - b.score if b is not None else None
            row[name] = TaxCell(r.score, r.stderr, tax, diff, r.higher_is_better)
        table[task] = row
    return table


@dataclass
class TradeoffPoint:
    variant: str
    instruction: float
    knowledge: float
    knowledge_se: float  # approximate: per-task stderrs combined as independent


def _mean_with_se(results: list[TaskResult]) -> tuple[float, float]:
    mean = float(np.mean([r.score for r in results]))
    se = math.sqrt(sum((r.stderr or 0.0) ** 2 for r in results)) / len(results)
    return mean, se


def tradeoff_points(
    variants: dict[str, VariantResult], knowledge: list[str], instruction: list[str]
) -> list[TradeoffPoint]:
    """(instruction-following score, mean knowledge/reasoning score) for every variant that
    has every one of those tasks (a partial average would not be comparable)."""
    points = []
    for name, v in variants.items():
        if not knowledge or not instruction:
            break
        if not all(t in v.tasks for t in knowledge + instruction):
            continue
        know, se = _mean_with_se([v.tasks[t] for t in knowledge])
        instr = float(np.mean([v.tasks[t].score for t in instruction]))
        points.append(TradeoffPoint(name, instr, know, se))
    return points


def interpolation_line(points: list[TradeoffPoint]) -> list[TradeoffPoint]:
    """The reference curve base -> interp_t -> SFT, ordered by t (base is t=0, SFT t=1)."""
    keyed = []
    for p in points:
        t = 0.0 if p.variant == "base" else 1.0 if p.variant == "sft" else interp_t(p.variant)
        if t is not None:
            keyed.append((t, p))
    return [p for _, p in sorted(keyed, key=lambda tp: tp[0])]


@dataclass
class LineVerdict:
    variant: str
    line_knowledge: float | None  # knowledge on the line at the variant's instruction level
    distance: float | None  # variant knowledge minus line knowledge
    within_noise: bool | None
    text: str


def distance_to_line(point: TradeoffPoint, line: list[TradeoffPoint]) -> LineVerdict:
    """Where a variant lies relative to the base->SFT interpolation line.

    The line value at the variant's instruction-following level is the linear interpolation
    between consecutive line points; where the curve passes that level more than once the
    highest value is used, so "above the line" means better than every way of training less.
    """
    name, x, y = point.variant, point.instruction, point.knowledge
    if len(line) < 2:
        return LineVerdict(name, None, None, None,
                           f"No reference line for {name}: it needs base and SFT results "
                           "(and ideally interp_<t> variants) on the same tasks.")
    values, ses = [], []
    for p, q in zip(line, line[1:]):
        lo, hi = sorted((p.instruction, q.instruction))
        if lo <= x <= hi:
            w = 0.5 if hi == lo else (x - p.instruction) / (q.instruction - p.instruction)
            values.append(p.knowledge + w * (q.knowledge - p.knowledge))
            ses.append(p.knowledge_se + w * (q.knowledge_se - p.knowledge_se))
    if not values:
        xs = [p.instruction for p in line]
        best = max(line, key=lambda p: p.instruction)
        if x > max(xs):
            dominates = y >= best.knowledge
            return LineVerdict(name, None, None, None, (
                f"{name} follows instructions better ({x:.3f}) than every point of the "
                f"base→SFT line (best: {best.variant}, {best.instruction:.3f}), so the line "
                f"cannot be read at its level; its knowledge score is {y:.3f} against "
                f"{best.knowledge:.3f} for {best.variant}"
                + (": it is better on both axes." if dominates else
                   f": it trades {best.knowledge - y:.3f} knowledge for that gain.")))
        return LineVerdict(name, None, None, None, (
            f"{name}'s instruction-following score ({x:.3f}) is below every point of the "
            f"base→SFT line (lowest {min(xs):.3f}): it lost instruction following, so the "
            "comparison with 'train less' does not apply."))
    k = int(np.argmax(values))
    line_y, line_se = values[k], ses[k]
    d = y - line_y
    noise = 1.96 * math.sqrt(point.knowledge_se ** 2 + line_se ** 2)
    within = abs(d) <= noise if noise > 0 else None
    if d > 0:
        text = (f"{name} lies {d:.3f} above the base→SFT interpolation line at its "
                f"instruction-following level ({x:.3f}): it keeps more knowledge "
                f"({y:.3f} vs {line_y:.3f}) than simply training less would.")
    elif d < 0:
        text = (f"{name} lies {-d:.3f} below the base→SFT interpolation line at its "
                f"instruction-following level ({x:.3f}): interpolating SFT toward the base "
                f"('train less') keeps more knowledge ({line_y:.3f} vs {y:.3f}), so {name} "
                "does not beat it.")
    else:
        text = f"{name} lies exactly on the base→SFT interpolation line: no better than training less."
    if within:
        text += (f" The distance is within the noise of the scores (±{noise:.3f}, approximate "
                 "95% band), so this is not conclusive.")
    return LineVerdict(name, line_y, d, within, text)


def error_sets(
    variants: dict[str, VariantResult], tasks: list[str], merged: str = "dtm"
) -> dict | None:
    """The paper's error-set analysis over the sub-models, on items shared by all of them.

    For each task: items every sub-model gets wrong (shared), items only one sub-model gets
    wrong (unique to it), and how many of each the merged model answers correctly.
    Returns None when there are fewer than two sub-models with per-item results.
    """
    subs = sorted((n for n in variants if sub_index(n) is not None), key=sub_index)
    if len(subs) < 2:
        return None
    has_merged = merged in variants
    out: dict = {"sub_models": subs, "merged": merged if has_merged else None, "tasks": {}}
    for task in tasks:
        holders = [variants[s].tasks.get(task) for s in subs]
        if any(h is None or not h.items for h in holders):
            continue
        ids = set.intersection(*(set(h.items) for h in holders))
        m = variants[merged].tasks.get(task) if has_merged else None
        if m is not None and m.items:
            ids &= set(m.items)
        else:
            m = None
        wrong = {s: {i for i in ids if h.items[i] < CORRECT_AT} for s, h in zip(subs, holders)}
        shared = set.intersection(*wrong.values())
        unique = {s: wrong[s] - set().union(*(wrong[o] for o in subs if o != s)) for s in subs}

        def fixed(items: set) -> int | None:
            return None if m is None else sum(1 for i in items if m.items[i] >= CORRECT_AT)

        any_wrong = set().union(*wrong.values())
        out["tasks"][task] = {
            "items": len(ids),
            "any_wrong": len(any_wrong),
            "shared": len(shared),
            "shared_fixed": fixed(shared),
            "unique": {s: len(u) for s, u in unique.items()},
            "unique_fixed": {s: fixed(u) for s, u in unique.items()},
            "merged_wrong": None if m is None else sum(1 for i in ids if m.items[i] < CORRECT_AT),
        }
    return out if out["tasks"] else None
