"""Report figures as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from dtmerge.results.analysis import TaxCell, TradeoffPoint  # noqa: E402
from dtmerge.results.records import interp_t  # noqa: E402
from dtmerge.report.runinfo import series  # noqa: E402

_HIGHLIGHT = {"base": "#555555", "sft": "#d62728", "dtm": "#1f77b4"}
# Other variants cycle through colours that cannot be mistaken for base / SFT / DTM.
_OTHERS = ["#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def _colours(variants: list[str]) -> dict[str, str]:
    others = [v for v in variants if v not in _HIGHLIGHT]
    return {v: _HIGHLIGHT.get(v) or _OTHERS[others.index(v) % len(_OTHERS)] for v in variants}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _shown(table: dict[str, dict[str, TaxCell]], variants: list[str]) -> tuple[list[str], list[str]]:
    shown = [v for v in variants if v != "base" and interp_t(v) is None]
    tasks = [t for t, row in table.items() if any(row.get(v) and row[v].tax is not None for v in shown)]
    return shown, tasks


def _bars(ax, table: dict[str, dict[str, TaxCell]], shown: list[str], tasks: list[str]) -> None:
    width = 0.8 / len(shown)
    colours = _colours(shown)
    for j, v in enumerate(shown):
        xs, ys, lo, hi = [], [], [], []
        for i, t in enumerate(tasks):
            cell = table[t].get(v)
            if cell is None or cell.tax is None:
                continue
            d = cell.tax_diff
            # The paired mean (items both scored) is the value the interval belongs to.
            y = d.mean if d else cell.tax
            xs.append(i + (j - (len(shown) - 1) / 2) * width)
            ys.append(y)
            lo.append(max(0.0, y - d.low) if d else 0.0)
            hi.append(max(0.0, d.high - y) if d else 0.0)
        ax.bar(xs, ys, width, label=v, color=colours[v], yerr=[lo, hi], capsize=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")


def tax_chart(table: dict[str, dict[str, TaxCell]], variants: list[str],
              ylabel: str = "tax: score minus base",
              title: str = "Alignment tax per benchmark",
              gains: dict[str, dict[str, TaxCell]] | None = None) -> bytes | None:
    """Grouped bars: tax (variant minus base) per benchmark, with the paired 95% interval.

    Give tasks of one direction per chart: the report draws accuracies and language-modelling
    loss (lower is better, where a bar above zero is the tax) in separate charts. `gains`
    (instruction-following tasks, where a rise is what training is for) go in a second panel
    so a gain is never read as a tax."""
    shown, tasks = _shown(table, variants)
    gain_tasks = _shown(gains, variants)[1] if gains else []
    if not shown or not (tasks or gain_tasks):
        return None
    panels = [(table, tasks, ylabel, title)] if tasks else []
    if gain_tasks:
        panels.append((gains, gain_tasks, "gain: score minus base", "Instruction-following gain"))
    widths = [max(1, len(p[1])) for p in panels]
    fig, axes = plt.subplots(1, len(panels), squeeze=False, gridspec_kw={"width_ratios": widths},
                             figsize=(max(6, 1.2 * sum(widths) * max(1, len(shown)) / 2), 4))
    for i, (ax, (tab, names, label, head)) in enumerate(zip(axes[0], panels)):
        _bars(ax, tab, shown, names)
        ax.set_ylabel(label)
        note = "(error bars: paired bootstrap 95% interval)" if i == 0 else "(same intervals)"
        ax.set_title(f"{head}\n{note}", fontsize=10)
    axes[0][0].legend(fontsize=8, ncol=min(4, len(shown)))
    return _png(fig)


def tradeoff_chart(points: list[TradeoffPoint], line: list[TradeoffPoint],
                   errors: dict[str, tuple[float, float]] | None = None,
                   ylabel: str = "mean knowledge / reasoning score",
                   title: str = "Trade-off: above the line beats training less") -> bytes | None:
    """Instruction following (x) against the y axis (mean knowledge/reasoning, or forgetting
    in loss), with the base->SFT interpolation curve as the 'train less' reference line and
    approximate 95% intervals on both axes; `errors` maps a variant to the half-widths (x, y)
    of its interval bars where the caller has better ones (paired bootstrap)."""
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if len(line) >= 2:
        ax.plot([p.instruction for p in line], [p.knowledge for p in line], "--", color="gray",
                label="base→SFT interpolation ('train less')", zorder=1)
    colours = _colours([p.variant for p in points])
    for p in points:
        color = colours[p.variant]
        marker = "*" if p.variant.startswith("dtm") else "o"
        size = 160 if marker == "*" else 40
        xerr, yerr = ((errors or {}).get(p.variant)
                      or (1.96 * p.instruction_se, 1.96 * p.knowledge_se))
        ax.errorbar([p.instruction], [p.knowledge], xerr=[xerr], yerr=[yerr], fmt="none",
                    ecolor=color, alpha=0.5, capsize=2, zorder=1)
        ax.scatter([p.instruction], [p.knowledge], s=size, marker=marker, color=color, zorder=2)
        ax.annotate(p.variant, (p.instruction, p.knowledge), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    ax.set_xlabel("instruction-following score")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n(bars: approximate 95% intervals)", fontsize=10)
    if len(line) >= 2:
        ax.legend(fontsize=8, loc="best")
    return _png(fig)


def monitor_chart(curves: dict[str, list[dict]]) -> bytes | None:
    """Probe accuracy and the bias ratio (train-loss drop / held-out-loss drop) per job."""
    if not curves:
        return None
    fig, (ax_acc, ax_ratio) = plt.subplots(1, 2, figsize=(10, 3.8))
    for job, rows in curves.items():
        steps, acc = series(rows, "probe_acc")
        if acc:
            ax_acc.plot(steps, acc, marker=".", label=job)
        steps, ratio = series(rows, "ratio")
        if ratio:
            ax_ratio.plot(steps, ratio, marker=".", label=job)
    ax_acc.set_title("Knowledge probe accuracy")
    ax_acc.set_xlabel("step")
    ax_ratio.set_title("Bias indicator: train-loss drop / held-out-loss drop")
    ax_ratio.set_xlabel("step")
    ax_ratio.axhline(1.0, color="gray", linewidth=0.8, linestyle=":")
    for ax in (ax_acc, ax_ratio):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _png(fig)
