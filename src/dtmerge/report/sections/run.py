"""The report's sections about the run itself: sub-model error sets, bias measures, the
training monitor, job timings and evaluation settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dtmerge.report import plots
from dtmerge.results.analysis import error_sets
from dtmerge.report.sections.bias import bias_section
from dtmerge.report.context import Part, ReportContext, fmt
from dtmerge.report.document import Image, Paragraph, Section, Table
from dtmerge.results.records import VariantResult, sub_index
from dtmerge.rundir import RunDir, read_state_json, rerun_hint
from dtmerge.report.runinfo import (
    format_seconds, job_rows, last_alert, monitor_curves, monitor_summary, series,
)


def _why_no_error_sets(ctx: ReportContext) -> str:
    subs = [n for n in ctx.names if sub_index(n) is not None]
    if len(subs) < 2:
        return (f"Empty: this run scored {len(subs)} sub-model(s) ({', '.join(subs) or 'none'}); "
                "the analysis needs per-item results of at least two (eval/sub_<k>.json). "
                "Add `submodels` to eval.variants to see which errors merging fixes.")
    return ("Empty: no knowledge task has per-item results for every sub-model "
            f"({', '.join(subs)}); re-run `dtm eval` so the files keep their items.")


def error_set_section(ctx: ReportContext) -> Part:
    sets = error_sets(ctx.variants, ctx.knowledge)
    return Part.of(_error_set_section(sets, _why_no_error_sets(ctx)), error_sets=sets)


def bias_measures_section(ctx: ReportContext) -> Part:
    bias = read_state_json(ctx.eval_dir / "bias.json", rerun_hint(f"dtm eval {ctx.run.root}"),
                           default=None)
    if not bias:
        return Part.of(Section("Bias of the instruction data", [Paragraph(
            "Empty: this run has no eval/bias.json (the bias measures run with `dtm eval` "
            "when the evaluated tasks include multiple choice or generation).")]))
    return Part.of(bias_section(bias))


def monitor_section(ctx: ReportContext) -> Part:
    curves = monitor_curves(ctx.run)
    if not curves:
        return Part.of(Section("Training monitor", [Paragraph(
            "Empty: no training job of this run wrote monitor curves, so the monitor was off "
            "(monitor.enabled: false). Turn it on to track knowledge during training, be "
            "alerted when it drops and keep the best checkpoint.")]))
    return Part.of(_monitor_section(curves, {j: monitor_summary(ctx.run, j) for j in curves}))


def _linked_jobs(ctx: ReportContext) -> list[dict]:
    """Jobs of the runs that trained a variant copied into this one (linked_runs.json, e.g.
    the demo's longer-trained DTM), named '<variant> ← <job>'."""
    linked = read_state_json(ctx.run.root / "linked_runs.json", "rerun `dtm demo` (it links the "
                             "longer-trained run again)", default={})
    out = []
    for variant, path in linked.items():
        if isinstance(path, str) and Path(path).is_dir() and Path(path) != ctx.run.root:
            out += [j | {"job": f"{variant} ← {j['job']}"} for j in job_rows(RunDir(path))]
    return out


def timings_section(ctx: ReportContext) -> Part:
    """Job times from the manifest; the report job itself is the one being written now, so
    it is left out rather than shown as 'running'."""
    jobs = [j for j in job_rows(ctx.run) if j["job"] != "report"] + _linked_jobs(ctx)
    if not jobs:
        return Part.of(Section("Run timings", [Paragraph(
            "No manifest.json jobs in this run directory, so there are no timings to show.")]))
    rows = [[j["job"], j["status"], format_seconds(j["seconds"])] for j in jobs]
    total = sum(j["seconds"] or 0 for j in jobs if j["status"] == "done")
    return Part.of(Section("Run timings", [
        Table(["job", "status", "time"], rows),
        Paragraph(f"Finished jobs took {format_seconds(total)} in all (the report itself is "
                  "not counted: it is being written).")]))


def settings_section(ctx: ReportContext) -> Part:
    return Part.of(_settings_section(ctx.variants))


def _error_set_section(sets: dict | None, why_empty: str) -> Section:
    title = "Error sets of the sub-models (knowledge tasks)"
    if not sets:
        return Section(title, [Paragraph(why_empty)])
    subs = sets["sub_models"]
    fixed = sets["merged"] is not None

    def cell(n, f):
        return f"{n} ({f} fixed)" if fixed and f is not None else str(n)

    rows = []
    for task, s in sets["tasks"].items():
        rows.append([task, str(s["items"]), str(s["any_wrong"]), cell(s["shared"], s["shared_fixed"])]
                    + [cell(s["unique"][k], s["unique_fixed"][k]) for k in subs]
                    + [str(s["merged_wrong"]) if fixed else "-"])
    text = ("Items every sub-model gets wrong are shared errors (knowledge the base lacks or all "
            "portions share a bias on); items only one sub-model gets wrong are unique to it "
            "(its portion's bias). The paper's claim is that merging keeps the shared knowledge "
            "and cancels unique biases: the merged model should fix many unique errors.")
    if fixed:
        tot_u = sum(sum(s["unique"].values()) for s in sets["tasks"].values())
        tot_f = sum(sum(v or 0 for v in s["unique_fixed"].values()) for s in sets["tasks"].values())
        tot_s = sum(s["shared"] for s in sets["tasks"].values())
        tot_sf = sum(s["shared_fixed"] or 0 for s in sets["tasks"].values())
        text += (f" Here {sets['merged']} fixes {tot_f} of {tot_u} unique errors and "
                 f"{tot_sf} of {tot_s} shared ones.")
    return Section(title, [Paragraph(text), Table(
        ["task", "items", "wrong by any", "shared"] + [f"unique to {k}" for k in subs]
        + [f"{sets['merged'] or 'merged'} wrong"], rows)])


def _kept_cell(summary: dict | None) -> str:
    if not summary or summary.get("kept_step") is None:
        return "-"
    score = summary.get("kept_score")
    cell = f"step {summary['kept_step']} ({summary.get('kept_by')} {_num(score)})"
    if summary.get("stopped_by"):
        cell += f"; stopped by {summary['stopped_by']}, weights restored"
    return cell


def _num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else "-"


def _monitor_findings(curves: dict[str, list[dict]], summaries: dict[str, dict | None]) -> list[str]:
    """One line per measure: which jobs crossed the alert thresholds."""
    drops, ratios, kept = [], [], []
    thresholds = {"drop": None, "ratio": None}
    for job, lines in curves.items():
        s = summaries.get(job) or {}
        thresholds["drop"] = s.get("drop_threshold", thresholds["drop"])
        thresholds["ratio"] = s.get("ratio_threshold", thresholds["ratio"])
        if s.get("alert"):
            drops.append(f"{job} (step {s.get('alert_step')})")
        _, ratio = series(lines, "ratio")
        limit = s.get("ratio_threshold")
        if ratio and isinstance(limit, (int, float)) and max(ratio) > limit:
            ratios.append(f"{job} (max {max(ratio):.2f})")
        if s.get("kept_model"):
            kept.append(f"{job} → {Path(s['kept_model']).name}")
    drop_rule = f"more than {thresholds['drop']:g} below its peak" if thresholds["drop"] is not None else "below its peak"
    ratio_rule = f"above {thresholds['ratio']:g}" if thresholds["ratio"] is not None else "above its threshold"
    out = [f"Finding: knowledge fell {drop_rule} in " + ", ".join(drops) + "."
           if drops else f"Finding: knowledge never fell {drop_rule}.",
           f"Finding: the bias ratio rose {ratio_rule} in " + ", ".join(ratios)
           + ": training loss falls much faster than held-out loss, the data's own "
             "regularities are being fitted." if ratios else
           f"Finding: the bias ratio stayed at or below {ratio_rule.removeprefix('above ')}."]
    if kept:
        out.append("Best checkpoints kept as models of their own (score them with "
                   "eval.variants: best): " + ", ".join(kept) + ".")
    for job, lines in curves.items():
        why = (summaries.get(job) or {}).get("kept_why")
        if why:  # best_by tradeoff: what the choice rests on, or why the final step won
            out.append(f"Best step of {job}: {why}.")
    return out


def _monitor_section(curves: dict[str, list[dict]], summaries: dict[str, dict | None]) -> Section:
    rows = []
    for job, lines in curves.items():
        steps, acc = series(lines, "probe_acc")
        _, ratio = series(lines, "ratio")
        if acc:
            k = int(np.argmax(acc))
            peak = f"{acc[k]:.3f} @ step {int(steps[k])}"
            last = f"{acc[-1]:.3f} ({acc[-1] - acc[k]:+.3f} from peak)"
        else:
            peak = last = "-"
        rows.append([job, str(len(lines)), peak, last, fmt(ratio[-1], 2) if ratio else "-",
                     _kept_cell(summaries.get(job)), last_alert(lines, summaries.get(job)) or "-"])
    blocks: list = [Paragraph(
        "The monitor scores a fixed knowledge probe during training and tracks the paper's bias "
        "indicator: the drop of training loss divided by the drop of held-out loss (about 1 "
        "while the model learns what generalises, growing as it fits the data's own quirks).")]
    chart = plots.monitor_chart(curves)
    if chart:
        blocks.append(Image("monitor.png", chart, "monitor curves per training job"))
    blocks.append(Table(["job", "probes", "peak probe acc", "last probe acc", "last ratio",
                         "best kept", "last alert"], rows))
    blocks += [Paragraph(t) for t in _monitor_findings(curves, summaries)]
    return Section("Training monitor", blocks)


def _show(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _settings_section(variants: dict[str, VariantResult]) -> Section:
    keys = ["num_fewshot", "apply_chat_template", "limit", "batch_size", "lm_eval_version"]
    rows = [[n] + [_show(v.settings.get(k, "-")) for k in keys] + [v.model or "-"]
            for n, v in variants.items()]
    return Section("Evaluation settings", [Table(["variant"] + keys + ["model"], rows)])
