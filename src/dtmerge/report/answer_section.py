"""The report's first section: the answer in a few sentences, each with its numbers.

Does each method (DTM, its variants, recipes, best checkpoints) beat SFT, does it beat the
base→SFT interpolation line ("train less"), does the line itself beat SFT, and which variant
to ship. Every "better"/"worse" is a paired bootstrap 95% interval that excludes zero; any
other difference is said to be within noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from dtmerge.evaluate.stats import PairedDiff, stratified_paired_bootstrap, unpaired_normal
from dtmerge.report.analysis import (
    LineVerdict, distance_to_line, interpolation_line, mean_with_se, tradeoff_points,
)
from dtmerge.report.context import Part, ReportContext, is_method
from dtmerge.report.document import Paragraph, Section, Table
from dtmerge.report.lm_tradeoff_section import loss_verdicts
from dtmerge.report.results import interp_t

TITLE = "Answer"


@dataclass(frozen=True)
class AxisDiff:
    """One axis of a comparison: its name, the paired difference b - a and its digits."""

    name: str
    diff: PairedDiff
    digits: int = 3

    @property
    def better(self) -> bool:
        return self.diff.significant and self.diff.better

    @property
    def worse(self) -> bool:
        return self.diff.significant and self.diff.worse

    def say(self) -> str:
        d, f = self.diff, self.digits
        same = d.mean == 0 and d.low == 0 and d.high == 0
        word = ("better" if self.better else "worse" if self.worse
                else "identical on these items" if same else "within noise")
        return f"{self.name} {d.mean:+.{f}f} [{d.low:+.{f}f}, {d.high:+.{f}f}] ({word})"


def mean_diff(ctx: ReportContext, a: str, b: str, tasks: list[str]) -> PairedDiff | None:
    """b - a on the mean over `tasks`: stratified paired bootstrap on shared items, or a
    normal interval from the recorded standard errors when items cannot be paired."""
    va, vb = ctx.variants[a], ctx.variants[b]
    if not tasks or any(t not in va.tasks or t not in vb.tasks for t in tasks):
        return None
    vectors = []
    for t in tasks:
        ia, ib = va.tasks[t].items, vb.tasks[t].items
        common = sorted(set(ia) & set(ib), key=str)
        if not common:
            break
        vectors.append([ib[k] - ia[k] for k in common])
    if len(vectors) == len(tasks):
        return stratified_paired_bootstrap(vectors, n_boot=ctx.n_boot, seed=ctx.seed)
    (ma, sa), (mb, sb) = (mean_with_se([v.tasks[t] for t in tasks]) for v in (va, vb))
    return unpaired_normal(ma, sa, mb, sb)


def axes(ctx: ReportContext, a: str, b: str) -> list[AxisDiff]:
    """b against a on every axis: knowledge mean, instruction mean, each loss task."""
    out = []
    for name, tasks in ((ctx.knowledge_label, ctx.knowledge), ("instruction following", ctx.instruction)):
        d = mean_diff(ctx, a, b, tasks)
        if d is not None:
            out.append(AxisDiff(name, d))
    for task in ctx.lm_tasks:
        d = ctx.compare(a, b).get(task)
        if d is not None:
            out.append(AxisDiff(f"{task} {ctx.variants[a].tasks[task].label}", d, 4))
    return out


def join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def versus(name: str, ref: str, diffs: list[AxisDiff]) -> str:
    wins = [d.name for d in diffs if d.better]
    losses = [d.name for d in diffs if d.worse]
    detail = "; ".join(d.say() for d in diffs)
    if wins and not losses:
        head = f"{name} beats {ref} on {join(wins)}" + (
            "" if len(wins) == len(diffs) else ", and is within noise or equal on the rest")
    elif losses and not wins:
        head = f"{name} is worse than {ref} on {join(losses)}"
    elif wins:
        head = f"{name} trades: better than {ref} on {join(wins)}, worse on {join(losses)}"
    else:
        head = f"{name} is within noise of {ref} on every axis"
    return f"{head} ({name} minus {ref}: {detail})."


def dominates(diffs: list[AxisDiff]) -> bool:
    """Significantly better on at least one axis and significantly worse on none."""
    return any(d.better for d in diffs) and not any(d.worse for d in diffs)


def line_sentence(v: LineVerdict, plane: str) -> str:
    if v.distance is None:
        return v.text
    gap = f"{v.distance:+.4f} from the line (noise ±{v.noise or 0:.4f})"
    if v.better:
        return f"{v.variant} beats the interpolation line in {plane}: {gap}."
    if v.better is False:
        return (f"{v.variant} does not beat training less in {plane}: {gap}, on the worse side; "
                "an interpolation toward the base does better at its instruction level.")
    return f"{v.variant} is within noise of the interpolation line in {plane}: {gap}."


def _line_verdicts(ctx: ReportContext) -> dict[str, list[tuple[str, LineVerdict]]]:
    """Method -> (plane, its verdict against the interpolation line) for every plane."""
    out: dict[str, list[tuple[str, LineVerdict]]] = {}
    if ctx.knowledge and ctx.instruction:
        points = tradeoff_points(ctx.variants, ctx.knowledge, ctx.instruction)
        line = interpolation_line(points)
        for p in points:
            if is_method(p.variant):
                out.setdefault(p.variant, []).append((ctx.knowledge_label, distance_to_line(p, line)))
    for task in ctx.lm_tasks:
        for v in loss_verdicts(ctx, task)[2]:
            out.setdefault(v.variant, []).append((f"loss on {task}", v))
    return out


# Up to this many methods every one gets its sentences; with more (a recipes run, best
# checkpoints), DTM's keep them and the rest are one row each of a table, so the answer stays
# a few sentences long.
SENTENCES_FOR_AT_MOST = 3


def verdict_word(diffs: list[AxisDiff]) -> str:
    """One word for `versus`: beats / trades / worse / within noise."""
    wins, losses = any(d.better for d in diffs), any(d.worse for d in diffs)
    return "beats" if wins and not losses else "trades" if wins else "worse" if losses \
        else "within noise"


def line_word(v: LineVerdict) -> str:
    """A line verdict in a table cell: better / worse / within noise, with the distance (in
    the plane's own units and direction: on a loss plane better is below the line)."""
    if v.distance is None:
        return "off the line's range" if v.better is None else \
            ("better on both axes" if v.better else "not shown better")
    word = "better" if v.better else "worse" if v.better is False else "within noise"
    return f"{word} ({v.distance:+.4f})"


def answer_table(methods: list[str], against: dict[str, list[AxisDiff]],
                 lines: dict[str, list[tuple[str, LineVerdict]]]) -> Table:
    """One row per method: its difference to SFT on each axis, with the 95% interval, and
    where it lies against the interpolation line on each plane."""
    axes_ = list(dict.fromkeys(d.name for m in methods for d in against[m]))
    planes = list(dict.fromkeys(plane for m in methods for plane, _ in lines.get(m, [])))
    rows = []
    for m in methods:
        by_axis = {d.name: d for d in against[m]}
        by_plane = dict(lines.get(m, []))
        rows.append([m, verdict_word(against[m])]
                    + [by_axis[a].say().removeprefix(a + " ") if a in by_axis else "-"
                       for a in axes_]
                    + [line_word(by_plane[pl]) if pl in by_plane else "-" for pl in planes])
    return Table(["method", "vs SFT", *[f"{a} minus SFT [95%]" for a in axes_],
                  *[f"vs the line ({pl})" for pl in planes]], rows,
                 "Every other method against SFT and the base→SFT line (paired bootstrap)")


def ship_choice(ctx: ReportContext, against_sft: dict[str, list[AxisDiff]]) -> tuple[str, str]:
    """(variant, reason): the variant that beats SFT on some axis, beyond noise, and loses on
    none, with the most such wins (then the largest summed z-score); else SFT."""
    winners = [(sum(d.better for d in ds), sum(d.diff.mean / d.diff.stderr * (1 if d.diff.higher_is_better
                                                                            else -1)
                                            for d in ds if d.diff.stderr > 0), n)
               for n, ds in against_sft.items() if dominates(ds)]
    if not winners:
        return "sft", ("no variant is better than SFT on one axis, beyond noise, without being "
                       "worse on another; any other choice is a trade-off (see above)")
    best = max(winners)[2]
    wins = [d.name for d in against_sft[best] if d.better]
    return best, f"it beats SFT on {join(wins)} and is worse on nothing, beyond noise"


def answer_section(ctx: ReportContext) -> Part:
    """The Answer block: what the run shows, first, in sentences with their intervals."""
    if "sft" not in ctx.variants:
        return Part.of(Section(TITLE, [Paragraph(
            "No SFT result (eval/sft.json), so no method can be compared with plain fine-tuning; "
            "the scores below stand alone.")]), answer=None)
    methods = [n for n in ctx.names if is_method(n)]
    lines = _line_verdicts(ctx)
    against = {n: axes(ctx, "sft", n) for n in ctx.names if n != "sft" and n != "base"
               and (is_method(n) or interp_t(n) is not None)}
    in_words = methods if len(methods) <= SENTENCES_FOR_AT_MOST else \
        [m for m in methods if m.startswith("dtm")]
    in_table = [m for m in methods if m not in in_words]
    sentences = [versus(m, "SFT", against[m]) + " "
                 + " ".join(line_sentence(v, plane) for plane, v in lines.get(m, []))
                 for m in in_words]
    if in_table:
        groups: dict[str, list[str]] = {}
        for m in in_table:
            groups.setdefault(verdict_word(against[m]), []).append(m)
        said = {"beats": ("beats", "beat"), "trades": ("trades with", "trade with"),
                "worse": ("is worse than", "are worse than"),
                "within noise": ("is within noise of", "are within noise of")}
        sentences.append(f"{len(in_table)} other methods, one row each in the table below: "
                         + "; ".join(f"{join(ms)} {said[w][len(ms) > 1]} SFT"
                                     for w, ms in groups.items()) + ".")
    if not methods:
        sentences.append("No merged model or recipe among the results: only the references.")
    for n in [n for n in against if interp_t(n) is not None and dominates(against[n])]:
        sentences.append(f"The interpolation line dominates SFT: {versus(n, 'SFT', against[n])} "
                         "SFT is over-trained for this data: training less does better.")
    ship, why = ship_choice(ctx, against)
    sentences.append(f"Ship {ship}: {why}." + ("" if ship == "sft" else (
        " This choice is read off the same items the scores come from, so its margin is "
        "optimistic; confirm it on fresh items.")))
    intro = (f"Axes: {ctx.knowledge_label} = mean of {', '.join(ctx.knowledge) or 'none'}; "
             f"instruction following = mean of {', '.join(ctx.instruction) or 'none'}"
             + (f"; held-out loss: {', '.join(ctx.lm_tasks)}" if ctx.lm_tasks else "")
             + ". Differences are paired bootstrap 95% intervals on the same items"
             + (" (the TEST items: see 'Validation and test items')" if ctx.split_notes else "")
             + "; 'better' and 'worse' only when the interval excludes zero, otherwise 'within "
               "noise'.")
    record = {"ship": ship, "reason": why, "sentences": sentences,
              "vs_sft": {n: {d.name: d.diff.to_dict() for d in ds} for n, ds in against.items()}}
    blocks = [Paragraph(intro)] + [Paragraph(s) for s in sentences]
    if in_table:
        table = answer_table(in_table, against, lines)
        record["table"] = {"headers": table.headers, "rows": table.rows}
        blocks.insert(1 + len(in_words) + 1, table)  # right after the sentence announcing it
    return Part.of(Section(TITLE, blocks, emphasis=True), answer=record)
