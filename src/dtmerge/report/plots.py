"""Report figures as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from dtmerge.report.analysis import TaxCell, TradeoffPoint  # noqa: E402
from dtmerge.report.results import interp_t  # noqa: E402
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


def tax_chart(table: dict[str, dict[str, TaxCell]], variants: list[str],
              ylabel: str = "tax: score minus base",
              title: str = "Alignment tax per benchmark") -> bytes | None:
    """Grouped bars: tax (variant minus base) per benchmark, with the paired 95% interval.

    Give tasks of one direction per chart: the report draws accuracies and language-modelling
    loss (lower is better, where a bar above zero is the tax) in separate charts."""
    shown = [v for v in variants if v != "base" and interp_t(v) is None]
    tasks = [t for t, row in table.items() if any(row.get(v) and row[v].tax is not None for v in shown)]
    if not shown or not tasks:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks) * max(1, len(shown)) / 2), 4))
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
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n(error bars: paired bootstrap 95% interval)", fontsize=10)
    ax.legend(fontsize=8, ncol=min(4, len(shown)))
    return _png(fig)


def tradeoff_chart(points: list[TradeoffPoint], line: list[TradeoffPoint],
                   errors: dict[str, tuple[float, float]] | None = None) -> bytes | None:
    """Instruction following (x) against mean knowledge/reasoning (y), with the base->SFT
    interpolation curve as the 'train less' reference line; `errors` maps a variant to the
    half-widths (x, y) of its interval bars."""
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
        ax.scatter([p.instruction], [p.knowledge], s=size, marker=marker, color=color, zorder=2)
        if errors and p.variant in errors:
            ax.errorbar([p.instruction], [p.knowledge], xerr=[errors[p.variant][0]],
                        yerr=[errors[p.variant][1]], fmt="none", color=color, capsize=3)
        ax.annotate(p.variant, (p.instruction, p.knowledge), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    ax.set_xlabel("instruction-following score")
    ax.set_ylabel("mean knowledge / reasoning score")
    ax.set_title("Trade-off: above the line beats training less")
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
