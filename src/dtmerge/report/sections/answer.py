"""The report's first section: what to ship, first, then the evidence in a few sentences.

The recommendation is the one decision (`dtmerge.decision`), made on validation items and
then scored once on test items; the same function serves `dtm frontier` and
`dtm export RUN answer`, so they cannot disagree. Then: does each method (DTM, its variants,
recipes, best checkpoints) beat SFT, does it beat the base→SFT interpolation line ("train
less"), does the line itself beat SFT. Every "better"/"worse" is a paired bootstrap 95%
interval that excludes zero; any other difference is said to be within noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from dtmerge.config import AnswerConfig
from dtmerge.decision import Confirmation, confirm, decide_run
from dtmerge.decision.confirm import line_distances, test_replicates
from dtmerge.decision.rule import Interval
from dtmerge.evaluate.stats import PairedDiff, stratified_paired_bootstrap, unpaired_normal
from dtmerge.results.analysis import mean_with_se
from dtmerge.report.context import Part, ReportContext, is_method
from dtmerge.report.document import Paragraph, Section, Table
from dtmerge.results.records import interp_t

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


def interval_text(d: Interval, digits: int) -> str:
    """`+0.123 [+0.045, +0.201]`: a value and its 95% interval."""
    return f"{d.value:+.{digits}f} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]"


def line_word(d: Interval) -> str:
    """A distance to the line in a table cell: better / worse / within noise (> 0 is the
    better side on every plane: more knowledge, or less loss)."""
    word = "better" if d.low > 0 else "worse" if d.high < 0 else "within noise"
    return f"{word} ({interval_text(d, 4)})"


def line_sentence(name: str, plane: str, d: Interval) -> str:
    gap = f"{d.value:+.4f} [{d.low:+.4f}, {d.high:+.4f}] from the line"
    if d.low > 0:
        return f"{name} beats the interpolation line on {plane}: {gap}."
    if d.high < 0:
        return (f"{name} does not beat training less on {plane}: {gap}, on the worse side; "
                "an interpolation toward the base does better at its instruction level.")
    return f"{name} is within noise of the interpolation line on {plane}: {gap}."


# Up to this many methods every one gets its sentences; with more (a recipes run, best
# checkpoints), DTM's keep them and the rest are one row each of a table, so the answer stays
# a few sentences long.
SENTENCES_FOR_AT_MOST = 3


def verdict_word(diffs: list[AxisDiff]) -> str:
    """One word for `versus`: beats / trades / worse / within noise."""
    wins, losses = any(d.better for d in diffs), any(d.worse for d in diffs)
    return "beats" if wins and not losses else "trades" if wins else "worse" if losses \
        else "within noise"


def answer_table(methods: list[str], against: dict[str, list[AxisDiff]],
                 lines: dict[str, dict[str, Interval]]) -> Table:
    """One row per method: its difference to SFT on each axis, with the 95% interval, and
    where it lies against the interpolation line on each plane (paired, x resampled)."""
    axes_ = list(dict.fromkeys(d.name for m in methods for d in against[m]))
    planes = list(dict.fromkeys(plane for m in methods for plane in lines.get(m, {})))
    rows = []
    for m in methods:
        by_axis = {d.name: d for d in against[m]}
        by_plane = lines.get(m, {})
        rows.append([m, verdict_word(against[m])]
                    + [by_axis[a].say().removeprefix(a + " ") if a in by_axis else "-"
                       for a in axes_]
                    + [line_word(by_plane[pl]) if pl in by_plane else "-" for pl in planes])
    return Table(["method", "vs SFT", *[f"{a} minus SFT [95%]" for a in axes_],
                  *[f"vs the line ({pl}) [95%]" for pl in planes]], rows,
                 "Every other method against SFT and the base→SFT line (paired bootstrap)")


def confirmation_sentence(c: Confirmation) -> str:
    """Where the choice lands on the test items the decision did not see."""
    if c.missing:
        return f"On test items: {c.missing}."
    n = sum(c.items.values())
    parts = []
    sft = next((r for r in c.rows if r.point == "sft"), None)
    if sft is not None:
        parts.append(f"instruction following minus SFT {interval_text(sft.instruction, 3)}")
        parts += [f"{plane} vs SFT {interval_text(d, 4)} (> 0: better)"
                  for plane, d in sft.planes.items()]
    parts += [f"{plane} vs the line {line_word(d)}" for plane, d in c.line_distance.items()]
    verdict = (f"dominated beyond noise by {join(c.dominated)}: the validation items did not "
               "show that point meeting the target, so the choice stands as made on them; more "
               "validation items (eval.validation_fraction) or a wider answer.margin would let "
               "the decision see it" if c.dominated else
               "no measured point of the line dominates it beyond noise on any plane")
    return (f"On the {n} test items (not used to choose): {c.choice} has "
            + "; ".join(parts) + f"; {verdict}.") if parts else \
        f"On the {n} test items (not used to choose): {verdict}."


def confirmation_table(c: Confirmation) -> Table | None:
    """The choice against every measured point of the line on test items, one row each: the
    paired difference on each axis (> 0: the choice is better) and whether the point
    dominates it beyond noise."""
    if c.missing or not c.rows:
        return None
    planes = list(dict.fromkeys(p for r in c.rows for p in r.planes))

    rows = [[r.point, interval_text(r.instruction, 3),
             *[interval_text(r.planes[p], 4) if p in r.planes else "-" for p in planes],
             f"yes ({', '.join(r.dominated_on)})" if r.dominated_on else "no"]
            for r in c.rows]
    return Table(["line point", "instruction following: choice minus point [95%]",
                  *[f"{p}: choice minus point, > 0 better [95%]" for p in planes],
                  "dominates the choice beyond noise?"], rows,
                 f"{c.choice} against each measured point of the line, on the "
                 f"{sum(c.items.values())} test items")


def answer_section(ctx: ReportContext) -> Part:
    """The Answer block: what the run shows, first, in sentences with their intervals."""
    if "sft" not in ctx.variants:
        return Part.of(Section(TITLE, [Paragraph(
            "No SFT result (eval/sft.json), so no method can be compared with plain fine-tuning; "
            "the scores below stand alone.")]), answer=None)
    rd = decide_run(ctx.run, ctx.answer or AnswerConfig(), ctx.requested_knowledge,
                    ctx.requested_instruction, ctx.n_boot, ctx.seed, ctx.split_seed)
    # wise_ft recipes are points of the line (training less), not methods judged against it
    methods = [n for n in ctx.names if is_method(n) and (rd is None or n not in rd.line)]
    test = test_replicates(ctx.run, rd) if rd else {}  # read once for both uses below
    lines = line_distances(ctx.run, rd, methods, ctx.n_boot, ctx.seed, test) if rd else {}
    against = {n: axes(ctx, "sft", n) for n in ctx.names if n != "sft" and n != "base"
               and (is_method(n) or interp_t(n) is not None)}
    in_words = methods if len(methods) <= SENTENCES_FOR_AT_MOST else \
        [m for m in methods if m.startswith("dtm")]
    in_table = [m for m in methods if m not in in_words]
    sentences = []
    confirmation = None
    if rd is None:
        sentences.append("No decision: it needs an instruction-following task and a knowledge "
                         "or held-out loss task scored for SFT and the candidates.")
    else:
        confirmation = confirm(ctx.run, rd, ctx.n_boot, ctx.seed, test)
        confirmed = confirmation_sentence(confirmation)
        sentences += [rd.decision.headline, confirmed]
        sentences += rd.decision.notes
    sentences += [versus(m, "SFT", against[m]) + "".join(
                  " " + line_sentence(m, plane, d) for plane, d in lines.get(m, {}).items())
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
    ship = rd.decision.choice if rd else "sft"
    intro = (f"Axes: {ctx.knowledge_label} = mean of {', '.join(ctx.knowledge) or 'none'}; "
             f"instruction following = mean of {', '.join(ctx.instruction) or 'none'}"
             + (f"; held-out loss: {', '.join(ctx.lm_tasks)}" if ctx.lm_tasks else "")
             + ". The recommendation is made on VALIDATION items (docs/decision.md) and then "
               "scored once on test items. Differences are paired bootstrap 95% intervals on "
               "the same items"
             + (" (the TEST items: see 'Validation and test items')" if ctx.split_notes else "")
             + "; 'better' and 'worse' only when the interval excludes zero, otherwise 'within "
               "noise'.")
    record = {"ship": ship, "reason": rd.decision.headline if rd else sentences[0],
              "sentences": sentences,
              "decision": rd.to_dict() if rd else None,
              "confirmation": confirmation.to_dict() if confirmation else None,
              "vs_sft": {n: {d.name: d.diff.to_dict() for d in ds} for n, ds in against.items()}}
    blocks = [Paragraph(sentences[0]), Paragraph(intro)] + [Paragraph(s) for s in sentences[1:]]
    if in_table:
        table = answer_table(in_table, against, lines)
        record["table"] = {"headers": table.headers, "rows": table.rows}
        announced = next(i for i, s in enumerate(sentences) if "other methods, one row" in s)
        blocks.insert(announced + 2, table)  # right after the sentence announcing it
    checked = confirmation_table(confirmation) if confirmation else None
    if checked is not None:  # right after the confirmation sentence
        blocks.insert(next(i for i, b in enumerate(blocks)
                           if getattr(b, "text", None) == confirmed) + 1, checked)
        record["confirmation_table"] = {"headers": checked.headers, "rows": checked.rows}
    return Part.of(Section(TITLE, blocks, emphasis=True), answer=record)
