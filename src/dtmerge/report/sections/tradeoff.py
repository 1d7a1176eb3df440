"""The report's trade-off view: instruction following against knowledge, with the
base→SFT interpolation line ("train less") as the reference a method must beat."""

from __future__ import annotations

from dtmerge.report import plots
from dtmerge.results.analysis import distance_to_line, interpolation_line, tradeoff_points
from dtmerge.report.context import Part, ReportContext, fmt, is_method
from dtmerge.report.document import Image, Paragraph, Section, Table

TITLE = "Trade-off: instruction following against knowledge"


def tradeoff_section(ctx: ReportContext) -> Part:
    know, instr = ctx.knowledge, ctx.instruction
    if not know or not instr:
        missing = "knowledge/reasoning" if not know else "instruction-following"
        return Part.of(Section(TITLE, [Paragraph(
            f"No {missing} benchmark in the results, so the trade-off view is skipped. Name them "
            "in report.knowledge_tasks / report.instruction_tasks, or evaluate tasks whose "
            "category is knowledge, reasoning or instruction.")]), tradeoff=None)
    points = tradeoff_points(ctx.variants, know, instr)
    line = interpolation_line(points)
    verdicts = [distance_to_line(p, line, paired=ctx.line_interval(p.variant, "knowledge"))
                for p in points if is_method(p.variant)]
    blocks: list = [Paragraph(
        f"Each point is a variant: x = instruction following (mean of {', '.join(instr)}), "
        f"y = mean knowledge/reasoning score ({', '.join(know)}). The dashed line joins base, "
        "the base→SFT weight interpolations and SFT: the cost of simply training less. A method "
        "only beats 'train less' if it lies above that line.")]
    chart = plots.tradeoff_chart(points, line)
    if chart:
        blocks.append(Image("tradeoff.png", chart, "instruction following against knowledge"))
    if len(line) < 3:
        blocks.append(Paragraph("Only the line's end points are known; add interpolation variants "
                                "(eval.variants: interpolation) for a curve."))
    blocks += [Paragraph(v.text) for v in verdicts]
    if not verdicts:
        blocks.append(Paragraph("No merged model (dtm) among the results to place against the line."))
    blocks.append(Table(["variant", "instruction", "knowledge", "±se (approx.)"],
                        [[p.variant, fmt(p.instruction), fmt(p.knowledge), fmt(p.knowledge_se)]
                         for p in points]))
    record = {
        "points": {p.variant: {"instruction": p.instruction, "knowledge": p.knowledge} for p in points},
        "line": [p.variant for p in line],
        "verdicts": {v.variant: {"distance": v.distance, "line_knowledge": v.line_knowledge,
                                 "within_noise": v.within_noise, "text": v.text} for v in verdicts},
    }
    return Part.of(Section(TITLE, blocks), tradeoff=record)
