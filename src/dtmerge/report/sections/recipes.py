"""The report's recipes section: every recipe beside the base-to-SFT interpolation line, its
tax per benchmark, DTM against each recipe on the same items, what each recipe cost, and
which recipes no other recipe beats on both axes; for l2 and ewc, the penalty strength and,
with `coef: auto`, the sweep that chose it.

Reads `recipes.json` (written by the merge stage: what each variant is) and the manifest
(trained tokens and wall time of each recipe's jobs). Runs without recipes beyond sft and
dtm get no section, so their reports are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dtmerge.evaluate.stats import PairedDiff
from dtmerge.results.analysis import (
    TradeoffPoint, compare_variants, distance_to_line, interpolation_line, tax_table,
    tradeoff_points,
)
from dtmerge.report import plots
from dtmerge.report.context import Part, ReportContext
from dtmerge.report.document import Image, Paragraph, Section, Table
from dtmerge.report.runinfo import format_seconds
from dtmerge.rundir import RunDir, read_state_json, rerun_hint

RECIPES_FILE = "recipes.json"
_STEPS = ("prepare", "disperse", "build", "merge")  # a recipe's non-training jobs


@dataclass
class RecipePoint:
    label: str
    instruction: float
    instruction_se: float
    knowledge: float
    knowledge_se: float


def _fmt(x: float | None, sign: bool = False) -> str:
    return "-" if x is None else (f"{x:+.3f}" if sign else f"{x:.3f}")


def _diff_cell(d: PairedDiff | None) -> str:
    if d is None:
        return "-"
    return f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{(' ' + d.mark()) if d.mark() else ''}"


def _se_of_mean(results) -> float:
    return math.sqrt(sum((r.stderr or 0.0) ** 2 for r in results)) / len(results)


def recipe_points(variants, labels: list[str], know: list[str], instr: list[str]) -> list[RecipePoint]:
    points = []
    for p in tradeoff_points({n: variants[n] for n in labels if n in variants}, know, instr):
        v = variants[p.variant]
        points.append(RecipePoint(p.variant, p.instruction, _se_of_mean([v.tasks[t] for t in instr]),
                                  p.knowledge, p.knowledge_se))
    return points


def _beyond_noise(a: float, a_se: float, b: float, b_se: float) -> bool:
    noise = 1.96 * math.sqrt(a_se ** 2 + b_se ** 2)
    return abs(b - a) > noise


def undominated_sentence(points: list[RecipePoint]) -> tuple[str, list[str]]:
    """The recipes no other recipe beats on both axes, and for each beaten one by whom and
    whether the lead is beyond noise (approximate 95% band) on both axes."""
    front, notes = [], []
    for p in points:
        beaters = [q for q in points if q is not p and q.instruction > p.instruction
                   and q.knowledge > p.knowledge]
        if not beaters:
            front.append(p.label)
            continue
        clear = [q.label for q in beaters
                 if _beyond_noise(p.instruction, p.instruction_se, q.instruction, q.instruction_se)
                 and _beyond_noise(p.knowledge, p.knowledge_se, q.knowledge, q.knowledge_se)]
        if clear:
            notes.append(f"{p.label} is beaten on both axes by {', '.join(clear)}, beyond noise.")
        else:
            notes.append(f"{p.label} is below {', '.join(q.label for q in beaters)} on both axes, "
                         "but within noise on at least one axis: not a clear loss.")
    text = ("No other recipe beats " + ", ".join(front) + " on both instruction following and "
            "knowledge." if front else "Every recipe is beaten on both axes by another.")
    return " ".join([text, *notes]), front


def recipe_costs(run: RunDir, described: dict) -> dict[str, dict]:
    """label -> training jobs, trained tokens (None when a job did not record them), wall
    seconds of its jobs (training, data preparation, merge/build) and inference cost."""
    jobs = run.read_manifest()["jobs"]
    out = {}
    for label, info in described.items():
        trained = [jobs.get(f"train:{j}") or {} for j in info.get("train_jobs", [])]
        tokens = [t.get("trained_tokens") for t in trained]
        steps = [jobs.get(f"{s}:{label}") or {} for s in _STEPS]
        steps += [j for name, j in jobs.items()  # coef: auto's sweep runs
                  if name.startswith("calibrate_") and name.endswith(f":{label}")]
        if label == "dtm":
            steps.append(jobs.get("merge") or {})
        out[label] = {
            "recipe": info.get("recipe", "?"), "train_jobs": len(trained),
            "trained_tokens": sum(tokens) if tokens and all(isinstance(t, int) for t in tokens)
            else None,
            "seconds": round(sum((j.get("seconds") or 0) for j in trained + steps), 1),
            "inference_cost": info.get("inference_cost", 1)}
    return out


def _cost_table(costs: dict[str, dict]) -> Table:
    rows = [[label, c["recipe"], str(c["train_jobs"]),
             f"{c['trained_tokens']:,}" if c["trained_tokens"] is not None else "-",
             format_seconds(c["seconds"]), f"{c['inference_cost']}×"] for label, c in costs.items()]
    return Table(["recipe", "kind", "training jobs", "trained tokens", "wall time",
                  "inference cost"], rows,
                 "Training cost (tokens the optimizer saw, time of the recipe's jobs; shared jobs "
                 "such as sft count for each recipe using them) and inference cost relative to "
                 "one model")


def _tradeoff_blocks(variants, labels, know, instr, data, paired=lambda name: None) -> list:
    if not know or not instr:
        return [Paragraph("No knowledge and instruction-following benchmarks both: the recipes "
                          "cannot be placed on the trade-off plane.")]
    points = recipe_points(variants, labels, know, instr)
    line = interpolation_line(tradeoff_points(variants, know, instr))
    verdicts = {p.label: distance_to_line(_as_tradeoff(p), line, paired=paired(p.label))
                for p in points}
    sentence, front = undominated_sentence(points)
    blocks: list = [Paragraph(sentence)]
    chart = plots.tradeoff_chart(
        [_as_tradeoff(p) for p in points], line,
        {p.label: (1.96 * p.instruction_se, 1.96 * p.knowledge_se) for p in points})
    if chart:
        blocks.append(Image("recipes_tradeoff.png", chart, "recipes against the interpolation "
                            "line (bars: approximate 95% intervals)"))
    rows = [[p.label, f"{p.instruction:.3f} ± {p.instruction_se:.3f}",
             f"{p.knowledge:.3f} ± {p.knowledge_se:.3f}", _fmt(verdicts[p.label].distance, True),
             {True: "within noise", False: "beyond noise"}.get(verdicts[p.label].within_noise, "-")]
            for p in points]
    blocks.append(Table(["recipe", "instruction ± se", "knowledge ± se", "distance to line",
                         "noise check"], rows,
                        "Distance: knowledge minus the base→SFT line at the recipe's "
                        "instruction-following level (+ above the line)"))
    data["recipes"] = {"undominated": front, "points": {
        p.label: {"instruction": p.instruction, "knowledge": p.knowledge,
                  "distance_to_line": verdicts[p.label].distance,
                  "within_noise": verdicts[p.label].within_noise} for p in points}}
    return blocks


def _as_tradeoff(p: RecipePoint) -> TradeoffPoint:
    return TradeoffPoint(p.label, p.instruction, p.knowledge, p.knowledge_se)


def _comparison_blocks(variants, labels, tasks, n_boot, seed) -> list:
    table = tax_table({n: variants[n] for n in ["base", *labels] if n in variants}, tasks,
                      n_boot, seed)
    blocks: list = []
    if "base" in variants:
        blocks.append(Table(["recipe", *tasks],
                            [[n] + [_diff_cell(table[t][n].tax_diff) if n in table[t] else "-"
                                    for t in tasks] for n in labels if n in variants],
                            "Tax per benchmark: recipe minus base [paired 95% interval]"))
    if "dtm" in variants:
        rows = []
        for n in labels:
            if n in variants and n != "dtm":
                diffs = compare_variants(variants[n], variants["dtm"], n_boot, seed)
                rows.append([n] + [_diff_cell(diffs.get(t)) for t in tasks])
        blocks.append(Table(["recipe", *tasks], rows,
                            "DTM minus each recipe, paired on the same items [95% bootstrap "
                            "interval]; ▲/▼: DTM significantly better/worse"))
    return blocks


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def strength_sentences(described: dict) -> list[str]:
    """One sentence per penalty recipe (l2, ewc): the coefficient it trained with, the
    penalty's share of its loss, and for `coef: auto` the sweep that chose it on the held-out
    instruction data (recipes/calibrate.py)."""
    out = []
    for label, info in described.items():
        coef = info.get("coef")
        if not isinstance(coef, (int, float)):
            continue
        share = info.get("penalty_share")
        text = (f"{label} trained with coef {coef:.3g}"
                + (f" (penalty {_pct(share)} of its final loss)" if share is not None else ""))
        cal = info.get("calibration")
        if cal:
            tried = "; ".join(f"{r['coef']:.3g}: {r['heldout_loss']:.4f} "
                              f"(penalty {_pct(r.get('penalty_share'))})" for r in cal["sweep"])
            unpenalised = (cal.get("reference") or {}).get("heldout_loss", float("nan"))
            text += (f", chosen by coef: auto on the held-out instruction data: {cal['reason']}. "
                     f"Sweep of {cal['sweep_steps']} of {cal['recipe_steps']} steps, held-out "
                     f"loss per coef: {tried}; unpenalised {unpenalised:.4f}, "
                     f"base {cal['base_heldout_loss']:.4f}, tolerance {cal['tolerance']:g}.")
        else:
            text += " (as configured)."
        out.append(text)
    return out


def recipes_section(ctx: ReportContext) -> Part:
    """The recipes section (no section for runs with only sft and dtm) and report.json's
    `recipes` key (the undominated recipes, their points and costs)."""
    described = read_state_json(ctx.run.root / RECIPES_FILE,
                                rerun_hint(f"dtm merge {ctx.run.root}"), default={})
    if not set(described) - {"sft", "dtm"}:
        return Part()
    variants, know, instr = ctx.variants, ctx.knowledge, ctx.instruction
    labels = [n for n in described if n in variants]
    tasks = sorted({t for n in labels for t in variants[n].tasks})
    data: dict = {}
    blocks: list = [Paragraph(
        f"{len(described)} recipes trained on the same base and data settings, scored on the "
        "same items: " + ", ".join(f"{n} ({described[n]['recipe']})" for n in described) + ".")]
    missing = [n for n in described if n not in variants]
    if missing:
        blocks.append(Paragraph("Not scored yet: " + ", ".join(missing) + "."))
    strength = strength_sentences(described)
    if strength:
        blocks.append(Paragraph(" ".join(strength)))
        data.setdefault("recipes", {})["strength"] = {
            n: {k: described[n].get(k) for k in ("coef", "calibration", "penalty_share")}
            for n in described if "coef" in described[n]}
    blocks += _tradeoff_blocks(variants, labels, know, instr, data,
                               paired=lambda name: ctx.line_interval(name, "knowledge"))
    blocks += _comparison_blocks(variants, labels, tasks, ctx.n_boot, ctx.seed)
    costs = recipe_costs(ctx.run, described)
    blocks.append(_cost_table(costs))
    data.setdefault("recipes", {})["cost"] = costs
    return Part((Section("Recipes", blocks),), data)
