"""The report's frontier section, from frontier/frontier.json (written by `dtm frontier`).

Every candidate on the trade-off plane on validation items (where it was chosen), then the
chosen one on TEST items: paired bootstrap intervals against SFT and against the base->SFT
interpolation line read at the chosen model's own instruction-following level, and a verdict.

The line's value at instruction level x lies between two line variants p and q with weight w;
per knowledge item it is (1 - w) * score_p + w * score_q, so the comparison is paired on the
same items like every other in the report. The knowledge mean is a mean of task means; its
paired difference is bootstrapped over items with each item weighted so that the mean of the
weighted differences is exactly that mean of per-task differences.
"""

from __future__ import annotations

import json
from pathlib import Path

from dtmerge.evaluate.stats import PairedDiff, format_p, paired_bootstrap
from dtmerge.report import plots
from dtmerge.report.context import Part, ReportContext
from dtmerge.report.analysis import (TradeoffPoint, diff_tasks, distance_to_line,
                                     interpolation_line, mean_with_se, tradeoff_points)
from dtmerge.report.document import Image, Paragraph, Section, Table
from dtmerge.report.results import VariantResult, load_eval_file

TITLE = "Frontier: merged candidates chosen on validation, confirmed on test"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def mean_diff(a: dict[str, dict], b: dict[str, dict], tasks: list[str], n_boot: int,
              seed: int) -> PairedDiff | None:
    """Paired bootstrap of mean-over-tasks(b) - mean-over-tasks(a); a, b: task -> id -> score."""
    parts = []
    for t in tasks:
        common = [i for i in a.get(t, {}) if i in b.get(t, {})]
        if not common:
            return None
        parts.append((t, common))
    total = sum(len(c) for _, c in parts)
    xs, ys = [], []
    for t, common in parts:
        scale = total / (len(common) * len(parts))
        xs += [a[t][i] * scale for i in common]
        ys += [b[t][i] * scale for i in common]
    return paired_bootstrap(xs, ys, n_boot=n_boot, seed=seed)


def line_items(line: list[TradeoffPoint], variants: dict[str, VariantResult], x: float,
               tasks: list[str]) -> tuple[dict[str, dict], str] | None:
    """Per-item knowledge scores of the line at instruction level x (highest segment there)."""
    best = None
    for p, q in zip(line, line[1:]):
        lo, hi = sorted((p.instruction, q.instruction))
        if lo <= x <= hi:
            w = 0.5 if hi == lo else (x - p.instruction) / (q.instruction - p.instruction)
            y = p.knowledge + w * (q.knowledge - p.knowledge)
            if best is None or y > best[0]:
                best = (y, p.variant, q.variant, w)
    if best is None:
        return None
    _, pv, qv, w = best
    a, b = variants[pv].tasks, variants[qv].tasks
    items = {t: {i: (1 - w) * a[t].items[i] + w * b[t].items[i]
                 for i in a[t].items if i in b[t].items} for t in tasks}
    return items, f"{1 - w:.2f} x {pv} + {w:.2f} x {qv}"


def _items(v: VariantResult, tasks: list[str]) -> dict[str, dict]:
    return {t: dict(v.tasks[t].items) for t in tasks if t in v.tasks}


def _row(label: str, d: PairedDiff | None) -> list[str]:
    if d is None:
        return [label, "-", "-", "-", "-"]
    return [label, f"{d.mean:+.3f}", f"[{d.low:+.3f}, {d.high:+.3f}]", format_p(d.p_value),
            d.mark() or "n.s."]


def verdict(d: PairedDiff | None, name: str, where: str) -> str:
    if d is None:
        return (f"Verdict: not comparable — {name}'s instruction following lies outside the "
                f"base→SFT line's range on test items ({where}).")
    if d.low > 0:
        return f"Verdict: ABOVE the line — {name} keeps {d.mean:+.3f} more knowledge than " \
               f"training less at the same instruction following ({where})."
    if d.high < 0:
        return f"Verdict: BELOW the line — training less ({where}) keeps {-d.mean:.3f} more " \
               f"knowledge than {name} at the same instruction following."
    return f"Verdict: ON the line (within noise) — the 95% interval of {name} minus the line " \
           f"({where}) contains zero."


def frontier_section(root: Path, variants: dict[str, VariantResult], know: list[str],
                     instr: list[str], n_boot: int = 2000, seed: int = 0,
                     loss_plane=None) -> list[Section]:
    """The section (as a one-element list; empty when the run has no frontier/frontier.json).

    `variants` are the run's results on test items (the report restricts them when the split
    is on); `know`/`instr` the knowledge and instruction-following tasks. `loss_plane`, when
    given, is called with the chosen candidate's test result and returns the blocks placing it
    in held-out loss (see `frontier_part`).
    """
    path = Path(root) / "frontier" / "frontier.json"
    if not path.is_file() or not know or not instr:
        return []
    summary = json.loads(path.read_text())
    chosen_name = summary["chosen"]["name"]
    blocks: list = [Paragraph(
        f"`dtm frontier` scored {len(summary['candidates'])} merged candidates of the sub-models "
        f"on VALIDATION items ({summary['split']['validation_fraction']:g} of each task's items) "
        f"and chose {chosen_name}: {summary['chosen']['why']}. "
        f"It took {summary['seconds']:.0f} s.")]
    blocks += _plane(summary, _validation_losses(Path(root), summary))
    chosen = load_eval_file(Path(root) / summary["chosen"]["test_eval"], chosen_name)
    blocks += _on_test(chosen, variants, know, instr, n_boot, seed)
    if loss_plane is not None:
        blocks += loss_plane(chosen)
    return [Section(TITLE, blocks)]


def _validation_losses(root: Path, summary: dict) -> dict[str, dict[str, float]]:
    """Candidate -> language-modelling task -> its loss on the validation documents, read
    from the candidates' validation results (empty when no loss task was scored)."""
    out = {}
    for c in summary["candidates"]:
        path = root / "frontier" / "eval" / f"{c['name']}.validation.json"
        if c["validation"] and path.is_file():
            result = load_eval_file(path, c["name"])
            out[c["name"]] = {t: r.score for t, r in result.tasks.items()
                              if not r.higher_is_better and r.parts}
    return out


def _plane(summary: dict, losses: dict[str, dict[str, float]]) -> list:
    """Every candidate (and the reference variants) on validation items: table and plot."""
    def point(name: str, p: dict) -> TradeoffPoint:
        return TradeoffPoint(name, p["instruction"], p["knowledge"], p.get("knowledge_se", 0.0))

    cands = [c for c in summary["candidates"] if c["validation"]]
    refs = {n: point(n, p) for n, p in summary["reference_validation"].items() if p}
    line = [refs[n] for n in summary["line_validation"] if n in refs]
    loss_tasks = sorted({t for v in losses.values() for t in v})
    rows = [[c["name"], c["method"], f"{c['scale']:g}", ",".join(map(str, c["subset"])),
             _fmt(c["validation"]["instruction"]), _fmt(c["validation"]["knowledge"]),
             *[f"{losses[c['name']][t]:.4f}" if t in losses.get(c["name"], {}) else "-"
               for t in loss_tasks],
             "yes" if c["pareto"] else "", "◀" if c["name"] == summary["chosen"]["name"] else ""]
            for c in cands]
    pruned = [c["name"] for c in summary["candidates"] if not c["validation"]]
    blocks: list = [Table(["candidate", "method", "λ", "sub-models", "instruction (val)",
                           "knowledge (val)", *[f"{t} (val, lower is better)" for t in loss_tasks],
                           "Pareto", "chosen"], rows, "Candidates on validation items")]
    if pruned:
        blocks.append(Paragraph(f"Dropped by the first pass (a subsample of validation items): "
                                f"{', '.join(pruned)}."))
    chart = plots.tradeoff_chart(list(refs.values()) + [point(c["name"], c["validation"])
                                                         for c in cands], line)
    if chart:
        blocks.append(Image("frontier.png", chart, "frontier candidates (validation items)"))
    return blocks


def _on_test(chosen: VariantResult, variants: dict[str, VariantResult], know: list[str],
             instr: list[str], n_boot: int, seed: int) -> list:
    """The chosen candidate against SFT and the line, on test items, with a verdict."""
    name = chosen.name
    test_points = tradeoff_points({**variants, name: chosen}, know, instr)
    mine = next((p for p in test_points if p.variant == name), None)
    if mine is None:
        return [Paragraph(f"{name} lacks some knowledge or instruction tasks on test items.")]
    rows = []
    if "sft" in variants:
        sft = variants["sft"]
        rows.append(_row(f"knowledge: {name} − sft",
                         mean_diff(_items(sft, know), _items(chosen, know), know, n_boot, seed)))
        rows.append(_row(f"instruction: {name} − sft",
                         mean_diff(_items(sft, instr), _items(chosen, instr), instr, n_boot, seed)))
    line = interpolation_line([p for p in test_points if p.variant != name])
    at_line = line_items(line, variants, mine.instruction, know) if len(line) >= 2 else None
    d_line, where = None, "no line point at that level"
    if at_line is not None:
        items, where = at_line
        d_line = mean_diff(items, _items(chosen, know), know, n_boot, seed)
        rows.append(_row(f"knowledge: {name} − line ({where})", d_line))
    text = (f"On TEST items (never used to choose): {name} scores knowledge "
            f"{mine.knowledge:.3f} and instruction following {mine.instruction:.3f}.")
    return [Paragraph(text),
            Table(["comparison (test items)", "difference", "95% interval", "p", "sig."], rows,
                  f"{name} on test items: paired bootstrap ({n_boot} resamples)"),
            Paragraph(verdict(d_line, name, where))]


def loss_on_test(ctx: ReportContext, chosen: VariantResult) -> list:
    """The chosen candidate on the second plane, on test documents: its forgetting in each
    language-modelling task (loss minus the base's), against SFT's and against the base→SFT
    line read at its instruction level, past the same noise check as every line verdict."""
    from dtmerge.report.lm_tradeoff_section import loss_axis, loss_points

    name, blocks = chosen.name, []
    if "base" not in ctx.variants or not ctx.instruction:
        return blocks
    for task in ctx.lm_tasks:
        base = ctx.variants["base"].tasks.get(task)
        if base is None or task not in chosen.tasks or any(t not in chosen.tasks
                                                            for t in ctx.instruction):
            continue
        forgetting = diff_tasks(base, chosen.tasks[task], ctx.n_boot, ctx.seed)
        rows = [_row(f"{task}: {name} − base (forgetting)", forgetting)]
        if "sft" in ctx.variants and task in ctx.variants["sft"].tasks:
            rows.append(_row(f"{task}: {name} − sft",
                             diff_tasks(ctx.variants["sft"].tasks[task], chosen.tasks[task],
                                        ctx.n_boot, ctx.seed)))
        instr, instr_se = mean_with_se([chosen.tasks[t] for t in ctx.instruction])
        mine = TradeoffPoint(name, instr, forgetting.mean, forgetting.stderr, instr_se)
        line = interpolation_line(loss_points(ctx, task))
        unit = loss_axis(ctx, task).unit.strip()
        blocks += [Paragraph(f"In held-out loss ({task}, {unit}, lower is better; TEST documents): "
                             f"{name} forgets {forgetting.mean:+.4f} against the base."),
                   Table(["comparison (test documents)", "difference", "95% interval", "p",
                          "sig."], rows, f"{name} in loss: paired bootstrap of the ratio of sums"),
                   Paragraph("Loss plane: " + distance_to_line(mine, line,
                                                               loss_axis(ctx, task)).text)]
    return blocks


def frontier_part(ctx: ReportContext) -> Part:
    """`frontier_section` as one of the report's section builders."""
    return Part(tuple(frontier_section(ctx.run.root, ctx.variants, ctx.knowledge, ctx.instruction,
                                       ctx.n_boot, ctx.seed,
                                       loss_plane=lambda chosen: loss_on_test(ctx, chosen))))
