"""The report's score sections: scores with the alignment tax, and DTM against plain SFT."""

from __future__ import annotations

from dtmerge.evaluate.stats import format_p
from dtmerge.report import plots
from dtmerge.report.context import Part, ReportContext, fmt, fmt_diff, mean_score
from dtmerge.report.document import Image, Paragraph, Section, Table
from dtmerge.results.records import VariantResult, settings_mismatches


def _score_cell(v: VariantResult, task: str) -> str:
    r = v.tasks.get(task)
    if r is None:
        return "-"
    return fmt(r.score) + (f" ± {r.stderr:.3f}" if r.stderr is not None else "")


def _intro(ctx: ReportContext) -> str:
    text = (f"{len(ctx.names)} variants on {len(ctx.tasks)} benchmarks. Tax is variant minus base "
            "in each benchmark's own metric (for accuracies, negative: knowledge lost); intervals "
            f"are paired bootstrap 95% intervals on the same items ({ctx.n_boot} resamples); ▲/▼ "
            "mark intervals that exclude zero, ▲ better and ▼ worse in the metric's direction.")
    lm = ctx.lm_tasks
    if lm:
        text += (f" {', '.join(lm)} {'is' if len(lm) == 1 else 'are'} language-"
                 "modelling loss (lower is better: a rise is the tax); never averaged with the "
                 "accuracies in the knowledge mean.")
    return text


def scores_section(ctx: ReportContext) -> Part:
    """Scores ± standard error per benchmark, the tax against base and its chart."""
    variants, tasks, names = ctx.variants, ctx.tasks, ctx.names
    headers = [ctx.header(t) for t in tasks]
    mean_headers = [f"{ctx.knowledge_label} mean", "instruction mean"]
    score_rows = [[n] + [_score_cell(variants[n], t) for t in tasks]
                  + [fmt(mean_score(variants[n], ctx.knowledge)),
                     fmt(mean_score(variants[n], ctx.instruction))] for n in names]
    blocks: list = [Paragraph(_intro(ctx)), Table(
        ["variant"] + headers + mean_headers, score_rows,
        "Score ± standard error per benchmark")]
    requested = (ctx.requested_knowledge or []) + (ctx.requested_instruction or [])
    misplaced = [t for t in requested if t in ctx.lm_tasks]
    if misplaced:
        blocks.append(Paragraph(
            f"Note: report.knowledge_tasks / instruction_tasks name {', '.join(misplaced)}, whose "
            "metric is lower-is-better; it is left out of the means (an average of accuracy and "
            "bits per byte means nothing) and reported in the language-modelling section."))
    table = ctx.tax
    if "base" in variants:
        blocks.append(_tax_and_gain_table(ctx))
        taxed = [t for t in tasks if t not in ctx.lm_tasks and t not in ctx.instruction]
        chart = plots.tax_chart({t: table[t] for t in taxed}, names,
                                gains={t: table[t] for t in ctx.instruction})
        if chart:
            blocks.append(Image("tax.png", chart, "alignment tax per benchmark"))
    else:
        blocks.append(Paragraph("No base result (eval/base.json): the tax cannot be computed."))
    for problem in settings_mismatches(variants):
        blocks.append(Paragraph(f"Warning: {problem}; scores are not comparable until every "
                                "variant is evaluated with the same settings."))
    return Part.of(
        Section("Scores and alignment tax", blocks),
        scores={n: {t: r.score for t, r in variants[n].tasks.items()} for n in names},
        tax={t: {n: c.tax for n, c in row.items() if c.tax is not None} for t, row in table.items()},
        # the intervals of the tax table, for readers of report.json (the model card)
        tax_intervals={t: {n: c.tax_diff.to_dict() for n, c in row.items() if c.tax_diff}
                       for t, row in table.items()},
    )


def _tax_and_gain_table(ctx: ReportContext) -> Table:
    """Change against base, taxes and gains in separate columns: a rise in instruction
    following is what training is for, so it is never shown as (negative) tax."""
    taxed = [t for t in ctx.tasks if t not in ctx.instruction]
    headers = ([f"tax: {ctx.header(t)}" for t in taxed]
               + [f"gain: {ctx.header(t)}" for t in ctx.instruction])
    rows = [[n] + [fmt_diff(ctx.tax[t][n].tax_diff) if n in ctx.tax[t] else "-"
                   for t in taxed + ctx.instruction]
            for n in ctx.names if n != "base"]
    return Table(["variant"] + headers, rows,
                 "Change against base [95% interval]: tax columns (knowledge, reasoning, loss; "
                 "▼ = lost) and gain columns (instruction following; ▲ = learned)")


def merged_variants(ctx: ReportContext) -> list[str]:
    """The merged models of a run: dtm and its variants (dtm_*)."""
    return [n for n in ctx.names if n.startswith("dtm")]


def dtm_vs_sft_section(ctx: ReportContext) -> Part:
    """Per benchmark, each merged model minus SFT, paired on the same items."""
    if "sft" not in ctx.variants:
        return Part(data={"dtm_vs_sft": {}})
    blocks: list = []
    record: dict[str, dict[str, dict]] = {}
    sft = ctx.variants["sft"]
    for m in merged_variants(ctx):
        diffs = ctx.compare("sft", m)
        rows = [[ctx.header(t), fmt(sft.tasks[t].score), fmt(ctx.variants[m].tasks[t].score),
                 fmt(d.mean, sign=True), f"[{d.low:+.3f}, {d.high:+.3f}]", format_p(d.p_value),
                 str(d.n), d.mark() or "n.s."] for t, d in diffs.items()]
        blocks.append(Table(["benchmark", "sft", m, f"{m} − sft", "95% interval", "p", "items",
                             "sig."], rows, f"{m} minus SFT, paired on the same items"))
        record[m] = {t: d.to_dict() for t, d in diffs.items()}
    if not record:
        blocks.append(Paragraph("No merged model result (eval/dtm.json) to compare with SFT."))
    return Part.of(Section("DTM against plain SFT", blocks), dtm_vs_sft=record)
