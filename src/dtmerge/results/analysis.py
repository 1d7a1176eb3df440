"""The alignment-tax analyses: tax table, DTM vs SFT, the trade-off line, error sets.

Every function takes loaded `VariantResult`s and returns plain data that the renderers turn
into Markdown, HTML and terminal tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dtmerge.results.records import TaskResult, VariantResult, interp_t, sub_index
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
    """One variant in a trade-off plane: x = instruction following, y = the other axis
    (mean knowledge/reasoning score, or forgetting in language-modelling loss)."""

    variant: str
    instruction: float
    knowledge: float
    knowledge_se: float  # approximate: per-task stderrs combined as independent
    instruction_se: float = 0.0


def mean_with_se(results: list[TaskResult]) -> tuple[float, float]:
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
        know, se = mean_with_se([v.tasks[t] for t in knowledge])
        instr, instr_se = mean_with_se([v.tasks[t] for t in instruction])
        points.append(TradeoffPoint(name, instr, know, se, instr_se))
    return points


def interpolation_line(points: list[TradeoffPoint]) -> list[TradeoffPoint]:
    """The reference curve base -> interp_t -> SFT, ordered by t (base is t=0, SFT t=1)."""
    keyed = []
    for p in points:
        t = 0.0 if p.variant == "base" else 1.0 if p.variant == "sft" else interp_t(p.variant)
        if t is not None:
            keyed.append((t, p))
    return [p for _, p in sorted(keyed, key=lambda tp: tp[0])]


@dataclass(frozen=True)
class Axis:
    """What a trade-off plane's y axis measures, for the verdict's wording and direction."""

    noun: str = "knowledge"  # "it keeps more <noun>"
    lower_is_better: bool = False
    digits: int = 3
    unit: str = ""  # appended to distances, e.g. " bits per byte"
    signed: bool = False  # y values are changes (print their sign)


    def show(self, y: float) -> str:
        return f"{y:+.{self.digits}f}" if self.signed else f"{y:.{self.digits}f}"


KNOWLEDGE = Axis()
Z95 = 1.96
LINE_POINTS = 3  # base, SFT and one interpolation point: a chord alone is no line to beat


@dataclass
class LineVerdict:
    variant: str
    line_knowledge: float | None  # the y value on the line at the variant's instruction level
    distance: float | None  # variant y minus line y (in the axis's own units and sign)
    within_noise: bool | None
    text: str
    better: bool | None = None  # beyond noise on the better side of the line (its direction)
    noise: float | None = None  # half-width of the approximate 95% band of `distance`


def _line_at(line: list[TradeoffPoint], x: float) -> tuple[list[float], list[float]]:
    values, ses = [], []
    for p, q in zip(line, line[1:]):
        lo, hi = sorted((p.instruction, q.instruction))
        if lo <= x <= hi:
            w = 0.5 if hi == lo else (x - p.instruction) / (q.instruction - p.instruction)
            values.append(p.knowledge + w * (q.knowledge - p.knowledge))
            ses.append(p.knowledge_se + w * (q.knowledge_se - p.knowledge_se))
    return values, ses


def _beyond(diff: float, se_a: float, se_b: float) -> bool:
    """|diff| exceeds the approximate 95% noise band of two independent estimates; with no
    recorded noise nothing is beyond it (no noise estimate is no evidence)."""
    noise = Z95 * math.sqrt(se_a ** 2 + se_b ** 2)
    return abs(diff) > noise if noise > 0 else False


def _off_the_line(point: TradeoffPoint, line: list[TradeoffPoint], axis: Axis) -> LineVerdict:
    """The verdict when the line never reaches the variant's instruction level."""
    name, x, y, f = point.variant, point.instruction, point.knowledge, axis.digits
    xs = [p.instruction for p in line]
    if x < min(xs):
        return LineVerdict(name, None, None, None, (
            f"{name}'s instruction-following score ({x:.3f}) is below every point of the "
            f"base→SFT line (lowest {min(xs):.3f}): it lost instruction following, so the "
            "comparison with 'train less' does not apply."))
    best = max(line, key=lambda p: p.instruction)
    sign = -1.0 if axis.lower_is_better else 1.0
    gain_y = sign * (y - best.knowledge)  # > 0: better than best on the y axis
    instr_sure = _beyond(x - best.instruction, point.instruction_se, best.instruction_se)
    y_sure = _beyond(y - best.knowledge, point.knowledge_se, best.knowledge_se)
    head = (f"{name} follows instructions better ({x:.3f}) than every point of the "
            f"base→SFT line (best: {best.variant}, {best.instruction:.3f}"
            + ("" if instr_sure else ", a gap within noise")
            + f"), so the line cannot be read at its level; its {axis.noun} score is {axis.show(y)} "
            f"against {axis.show(best.knowledge)} for {best.variant}")
    if gain_y >= 0 and instr_sure and (y_sure or gain_y == 0):
        return LineVerdict(name, None, None, False, head + ": it is better on both axes.", True)
    if gain_y >= 0:
        unsure = [a for a, sure in (("instruction following", instr_sure), (axis.noun, y_sure))
                  if not sure]
        return LineVerdict(name, None, None, True, head + (
            f": no worse on either axis, but the {' and '.join(unsure)} "
            f"{'gaps are' if len(unsure) > 1 else 'gap is'} within noise (approximate 95% "
            "band), so it is not shown to be better on both."))
    tail = (f": it trades {abs(y - best.knowledge):.{f}f}{axis.unit} of {axis.noun} for that gain"
            + ("." if y_sure else " (within noise)."))
    return LineVerdict(name, None, None, not y_sure, head + tail, False if y_sure else None)


def _past_the_line(point: TradeoffPoint, line: list[TradeoffPoint], axis: Axis,
                   paired: tuple[float, float, float]) -> LineVerdict:
    """Past the line's best instruction following, with the paired interval: the line is read
    as flat at that end (as the decision reads it), so the distance is to the end's y."""
    name, f = point.variant, axis.digits
    end = max(line, key=lambda p: p.instruction)
    value, low, high = paired  # > 0: the better side, in the plane's direction
    d = value if not axis.lower_is_better else -value
    where = (f"{name} follows instructions better ({point.instruction:.3f}) than every point of "
             f"the base→SFT line (best: {end.variant}, {end.instruction:.3f}); against that end "
             f"its {axis.noun} is {value:+.{f}f}{axis.unit} [{low:+.{f}f}, {high:+.{f}f}] on the "
             "better side (paired 95% interval, x resampled)")
    if low > 0:
        return LineVerdict(name, end.knowledge, d, False, where + ": better than training less.",
                           True, (high - low) / 2)
    if high < 0:
        return LineVerdict(name, end.knowledge, d, False, where + ": worse than training less.",
                           False, (high - low) / 2)
    return LineVerdict(name, end.knowledge, d, True, where + ": within noise.", None,
                       (high - low) / 2)


def distance_to_line(point: TradeoffPoint, line: list[TradeoffPoint],
                     axis: Axis = KNOWLEDGE,
                     paired: tuple[float, float, float] | None = None) -> LineVerdict:
    """Where a variant lies relative to the base->SFT interpolation line.

    The line value at the variant's instruction-following level is the linear interpolation
    between consecutive line points; where the curve passes that level more than once the
    best value is used, so "beats the line" means better than every way of training less.
    A verdict is only stated past the noise: `paired` is the paired bootstrap interval of the
    distance (value, low, high; > 0 on the better side, x resampled too: see
    `ReportContext.line_intervals`); without it, an approximate 95% band of the two y values
    taken as independent.
    """
    name, x, y, f = point.variant, point.instruction, point.knowledge, axis.digits
    if len(line) < LINE_POINTS:
        return LineVerdict(name, None, None, None,
                           f"No verdict against the line for {name}: it has {len(line)} "
                           f"measured point(s); {LINE_POINTS} are needed (base, SFT and at least "
                           "one interp_<t> variant, see eval.interpolation).")
    values, ses = _line_at(line, x)
    if not values and paired is not None and x > max(p.instruction for p in line):
        return _past_the_line(point, line, axis, paired)
    if not values:
        return _off_the_line(point, line, axis)
    sign = -1.0 if axis.lower_is_better else 1.0
    k = int(np.argmax([sign * v for v in values]))
    line_y, line_se = values[k], ses[k]
    d = y - line_y
    noise = Z95 * math.sqrt(point.knowledge_se ** 2 + line_se ** 2)
    if paired is not None:
        _, low, high = paired
        noise = (high - low) / 2
    if noise == 0:  # no noise estimate: any difference would read as "beyond noise"
        return LineVerdict(name, line_y, d, None,
                           f"No verdict against the line for {name}: its scores carry no noise "
                           f"estimate (distance {d:+.{f}f}{axis.unit}).", None, None)
    within = abs(d) <= noise if paired is None else paired[1] <= 0 <= paired[2]
    up, down = ("below", "above") if axis.lower_is_better else ("above", "below")
    where = f"the base→SFT interpolation line at its instruction-following level ({x:.3f})"
    if sign * d > 0:
        text = (f"{name} lies {abs(d):.{f}f}{axis.unit} {up} {where}: it keeps more {axis.noun} "
                f"({axis.show(y)} vs {axis.show(line_y)}) than simply training less would.")
    elif sign * d < 0:
        text = (f"{name} lies {abs(d):.{f}f}{axis.unit} {down} {where}: interpolating SFT toward "
                f"the base ('train less') keeps more {axis.noun} ({axis.show(line_y)} vs {axis.show(y)}), "
                f"so {name} does not beat it.")
    else:
        text = f"{name} lies exactly on the base→SFT interpolation line: no better than training less."
    if within:
        band = ("paired 95% interval" if paired is not None else "approximate 95% band")
        text += (f" The distance is within the noise of the scores (±{noise:.{f}f}, {band}), so "
                 "this is not conclusive.")
    better = None if within or d == 0 else sign * d > 0
    return LineVerdict(name, line_y, d, within, text, better, noise)


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
