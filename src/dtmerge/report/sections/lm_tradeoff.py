"""The second trade-off plane: forgetting in language-modelling loss against instruction
following, with the base→SFT interpolation line.

On real models held-out loss is often the only signal of forgetting that moves while the
accuracy benchmarks stay flat, so a method is also placed against "train less" in loss:
y = the variant's bits per byte minus the base's (paired on the same documents, so its
interval is tight), x = mean instruction-following score.
"""

from __future__ import annotations

from dtmerge.evaluate.lm_loss import metric_label
from dtmerge.report import plots
from dtmerge.results.analysis import (
    Axis, LineVerdict, TradeoffPoint, distance_to_line, interpolation_line, mean_with_se,
)
from dtmerge.report.context import Part, ReportContext, is_method
from dtmerge.report.document import Image, Paragraph, Section, Table

TITLE = "Trade-off in loss: forgetting against instruction following"


def loss_axis(ctx: ReportContext, task: str) -> Axis:
    r = next(v.tasks[task] for v in ctx.variants.values() if task in v.tasks)
    unit = metric_label(r.metric, True)
    return Axis(noun=f"held-out language modelling on {task}", lower_is_better=True, digits=4,
                unit=f" {unit}", signed=True)


def loss_points(ctx: ReportContext, task: str) -> list[TradeoffPoint]:
    """(instruction following, loss minus base) per variant with both; base sits at 0."""
    if "base" not in ctx.variants or not ctx.instruction:
        return []
    points = []
    for name, v in ctx.variants.items():
        if task not in v.tasks or any(t not in v.tasks for t in ctx.instruction):
            continue
        instr, instr_se = mean_with_se([v.tasks[t] for t in ctx.instruction])
        cell = ctx.tax.get(task, {}).get(name)
        if name == "base":
            y, se = 0.0, 0.0
        elif cell is not None and cell.tax_diff is not None:
            y, se = cell.tax_diff.mean, cell.tax_diff.stderr
        else:
            continue
        points.append(TradeoffPoint(name, instr, y, se, instr_se))
    return points


def loss_verdicts(ctx: ReportContext, task: str) -> tuple[list[TradeoffPoint], list[TradeoffPoint],
                                                            list[LineVerdict]]:
    points = loss_points(ctx, task)
    line = interpolation_line(points)
    axis = loss_axis(ctx, task)
    return points, line, [distance_to_line(p, line, axis,
                                           paired=ctx.line_interval(p.variant, f"loss on {task}"))
                          for p in points if is_method(p.variant)]


def lm_tradeoff_section(ctx: ReportContext) -> Part:
    if not ctx.lm_tasks:
        return Part()
    if not ctx.instruction or "base" not in ctx.variants:
        missing = "an instruction-following benchmark" if not ctx.instruction else "a base result"
        return Part.of(Section(TITLE, [Paragraph(
            f"Skipped: placing forgetting in loss against instruction following needs {missing}.")]),
            lm_tradeoff=None)
    blocks: list = [Paragraph(
        "Each point is a variant: x = instruction following (mean of "
        f"{', '.join(ctx.instruction)}), y = its held-out loss minus the base's (forgetting; "
        "lower is better). The dashed line joins base, the base→SFT interpolations and SFT. "
        "A method beats 'train less' in loss only if it lies below that line, beyond noise.")]
    record = {}
    for task in ctx.lm_tasks:
        points, line, verdicts = loss_verdicts(ctx, task)
        unit = loss_axis(ctx, task).unit.strip()
        chart = plots.tradeoff_chart(points, line, ylabel=f"{task}: {unit} minus base",
                                     title="Forgetting in loss: below the line beats training less")
        if chart:
            blocks.append(Image(f"tradeoff_{task}.png", chart,
                                f"forgetting on {task} against instruction following"))
        if len(line) < 3:
            blocks.append(Paragraph("Only the line's end points are known; add interpolation "
                                    "variants (eval.variants: interpolation) for a curve."))
        blocks += [Paragraph(v.text) for v in verdicts]
        blocks.append(Table(["variant", "instruction", f"{unit} minus base", "±se"],
                            [[p.variant, f"{p.instruction:.3f}", f"{p.knowledge:+.4f}",
                              f"{p.knowledge_se:.4f}"] for p in points], f"{task}"))
        record[task] = {"points": {p.variant: {"instruction": p.instruction, "forgetting": p.knowledge,
                                               "se": p.knowledge_se} for p in points},
                        "line": [p.variant for p in line],
                        "verdicts": {v.variant: {"distance": v.distance, "within_noise": v.within_noise,
                                                 "better": v.better, "text": v.text} for v in verdicts}}
    return Part.of(Section(TITLE, blocks), lm_tradeoff=record)
