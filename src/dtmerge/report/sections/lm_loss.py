"""The report's language-modelling section: held-out text loss as the forgetting measure.

Bits per byte (and perplexity) are lower-is-better and aggregate as ratios of sums over
documents, so they get their own table and chart, with bootstrap intervals over documents,
instead of being averaged with accuracies.
"""

from __future__ import annotations

from typing import Any

from dtmerge.evaluate.lm_loss import RATIO_METRICS, metric_label
from dtmerge.report import plots
from dtmerge.report.context import Part, ReportContext
from dtmerge.report.document import Image, Paragraph, Section, Table
from dtmerge.results.records import TaskResult
from dtmerge.evaluate.stats import format_p, ratio_interval

TITLE = "Forgetting: held-out language-modelling loss"


def score_interval(r: TaskResult, n_boot: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95% interval of a variant's score: recomputed from per-document parts when it has
    them (bootstrap of the ratio of sums), else the one recorded in the eval file."""
    if r.parts and r.metric in RATIO_METRICS:
        nums, dens = zip(*r.parts.values())
        low, high, _ = ratio_interval(nums, dens, RATIO_METRICS[r.metric].transform,
                                      n_boot=n_boot, seed=seed)
        return low, high
    return r.interval


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def lm_loss_section(ctx: ReportContext) -> Part:
    """Per task: each variant's loss with its interval, the other lm-eval metrics, and the
    change against base (positive: more loss, i.e. forgetting) with its paired interval."""
    if not ctx.lm_tasks:
        return Part()
    variants, tasks, table = ctx.variants, ctx.lm_tasks, ctx.tax
    blocks: list = [Paragraph(
        "Language-modelling loss of every variant on held-out real text (not in the training "
        "data). Lower is better; a rise over the base is forgetting of general language "
        "modelling, the alignment tax measured in loss. Bits per byte is the total negative "
        "log-likelihood (in bits) over the total UTF-8 bytes of all documents, a ratio of sums "
        "as lm-eval computes it; its intervals resample documents (bootstrap, 95%), paired on "
        "the same documents for changes.")]
    out: dict[str, Any] = {}
    for task in tasks:
        rows, record = [], {}
        for name, v in variants.items():
            r = v.tasks.get(task)
            if r is None:
                continue
            ci = score_interval(r, ctx.n_boot, ctx.seed)
            cell = table.get(task, {}).get(name)
            d = cell.tax_diff if cell else None
            rows.append([
                name, _f(r.score) + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""),
                _f(r.metrics.get("byte_perplexity")), _f(r.metrics.get("word_perplexity"), 2),
                f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]" if d else "-",
                format_p(d.p_value) if d else "-",
                (d.mark() or "n.s.") if d else "-",
            ])
            record[name] = {"score": r.score, "interval": list(ci) if ci else None,
                            "metric": r.metric, "n": r.n,
                            "change_vs_base": d.to_dict() if d else None}
        label = metric_label(next(iter(record.values()))["metric"], False) if record else task
        blocks.append(Table(
            ["variant", f"{label} [95% interval]", "byte perplexity", "word perplexity",
             "minus base [95% interval]", "p", "sig."], rows,
            f"{task}: {label}; ▼ significantly more loss than base (forgetting), ▲ less"))
        blocks += [Paragraph(t) for t in _verdicts(task, label, record)]
        out[task] = record
    metrics = {r["metric"] for record in out.values() for r in record.values()}
    unit = metric_label(metrics.pop(), True) if len(metrics) == 1 else "loss"
    chart = plots.tax_chart({t: table[t] for t in tasks if t in table}, list(variants),
                            ylabel=f"{unit} minus base (above 0: forgetting)",
                            title="Held-out language-modelling loss against base")
    if chart:
        blocks.append(Image("lm_loss.png", chart, "held-out language-modelling loss minus base"))
    return Part.of(Section(TITLE, blocks), lm_loss=out)


def _verdicts(task: str, label: str, record: dict[str, Any]) -> list[str]:
    texts = []
    for name in ("sft", "dtm"):
        d = (record.get(name) or {}).get("change_vs_base")
        if not d:
            continue
        if d["significant"]:
            how = "raises" if d["mean"] > 0 else "lowers"
            texts.append(f"{name} {how} {label} on {task} by {abs(d['mean']):.4f} over the base "
                         f"(95% interval [{d['low']:+.4f}, {d['high']:+.4f}]): "
                         + ("forgetting, the tax in loss." if d["mean"] > 0 else
                            "it models this text better than the base."))
        else:
            texts.append(f"{name} changes {label} on {task} by {d['mean']:+.4f} against the base, "
                         f"within noise (95% interval [{d['low']:+.4f}, {d['high']:+.4f}]).")
    return texts
