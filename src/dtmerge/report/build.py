"""Assemble the alignment-tax report of a run directory from its files.

`build_report` reads eval/*.json (+ bias.json), the manifest and monitor curves, runs the
analyses and returns the document sections, the terminal summary table and a JSON summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dtmerge.report import plots
from dtmerge.report.bias_section import bias_section
from dtmerge.report.analysis import (
    compare_variants, distance_to_line, error_sets, interpolation_line, tax_table, tradeoff_points,
)
from dtmerge.report.document import Image, Paragraph, Section, Table
from dtmerge.report.lm_loss_section import lm_loss_section
from dtmerge.report.results import (
    ReportError, VariantResult, all_tasks, higher_is_better, lm_loss_tasks, load_eval_dir,
    settings_mismatches, split_tasks,
)
from dtmerge.report.frontier_section import frontier_section
from dtmerge.report.splits import on_test_split
from dtmerge.report.runinfo import (
    format_seconds, job_rows, last_alert, monitor_curves, monitor_summary, read_json, series,
)
from dtmerge.evaluate.stats import PairedDiff, format_p
from dtmerge.rundir import RunDir


@dataclass
class Report:
    title: str
    sections: list[Section]
    summary: Table
    data: dict[str, Any] = field(default_factory=dict)


def fmt(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_diff(d: PairedDiff | None) -> str:
    if d is None:
        return "-"
    return f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{(' ' + d.mark()) if d.mark() else ''}"


def _score_cell(v: VariantResult, task: str) -> str:
    r = v.tasks.get(task)
    if r is None:
        return "-"
    return fmt(r.score) + (f" ± {r.stderr:.3f}" if r.stderr is not None else "")


def task_header(variants: dict[str, VariantResult], task: str) -> str:
    """Column title: the task, plus its metric and direction when lower is better."""
    for v in variants.values():
        r = v.tasks.get(task)
        if r is not None and not r.higher_is_better:
            return f"{task}: {r.label}"
    return task


def _mean_score(v: VariantResult, tasks: list[str]) -> float | None:
    if not tasks or not all(t in v.tasks for t in tasks):
        return None
    return float(np.mean([v.tasks[t].score for t in tasks]))


def build_report(run: RunDir, knowledge: list[str] | None = None, instruction: list[str] | None = None,
                 n_boot: int = 2000, seed: int = 0) -> Report:
    """Read a run directory's files and assemble the report.

    Args:
        run: the run directory (eval/, manifest.json, models/*/monitor.jsonl are read).
        knowledge, instruction: task lists (cfg.report); empty means "by recorded category".
        n_boot, seed: paired bootstrap settings.

    Raises:
        ReportError: no evaluation results, or a malformed result file.
    """
    eval_dir = run.root / "eval"
    variants = load_eval_dir(eval_dir) if eval_dir.is_dir() else {}
    variants, split_sections = on_test_split(eval_dir, variants)  # test items when split
    if not variants:
        raise ReportError(
            f"no evaluation results in {eval_dir}: run `dtm eval` on this run first "
            "(the report reads eval/<variant>.json)"
        )
    tasks = all_tasks(variants)
    know, instr = split_tasks(variants, knowledge, instruction)
    lm_tasks = lm_loss_tasks(variants)
    names = list(variants)
    headers = [task_header(variants, t) for t in tasks]
    data: dict[str, Any] = {"variants": names, "tasks": tasks, "knowledge_tasks": know,
                            "instruction_tasks": instr, "lm_loss_tasks": lm_tasks,
                            "higher_is_better": {t: higher_is_better(variants, t) for t in tasks}}
    sections: list[Section] = list(split_sections)

    # -- scores and tax
    table = tax_table(variants, tasks, n_boot, seed)
    score_rows = []
    for name in names:
        v = variants[name]
        row = [name] + [_score_cell(v, t) for t in tasks]
        row += [fmt(_mean_score(v, know)), fmt(_mean_score(v, instr))]
        score_rows.append(row)
    scores = Table(["variant"] + headers + ["knowledge mean", "instruction mean"], score_rows,
                   "Score ± standard error per benchmark")
    tax_rows = [[n] + [fmt_diff(table[t][n].tax_diff) if n in table[t] else "-" for t in tasks]
                for n in names if n != "base"]
    text = (f"{len(names)} variants on {len(tasks)} benchmarks. Tax is variant minus base in "
            "each benchmark's own metric (for accuracies, negative: knowledge lost); intervals "
            f"are paired bootstrap 95% intervals on the same items ({n_boot} resamples); ▲/▼ "
            "mark intervals that exclude zero, ▲ better and ▼ worse in the metric's direction.")
    if lm_tasks:
        text += (f" {', '.join(lm_tasks)} {'is' if len(lm_tasks) == 1 else 'are'} language-"
                 "modelling loss (lower is better: a rise is the tax); never averaged with the "
                 "accuracies in the knowledge mean.")
    blocks: list = [Paragraph(text), scores]
    misplaced = [t for t in (knowledge or []) + (instruction or []) if t in lm_tasks]
    if misplaced:
        blocks.append(Paragraph(
            f"Note: report.knowledge_tasks / instruction_tasks name {', '.join(misplaced)}, whose "
            "metric is lower-is-better; it is left out of the means (an average of accuracy and "
            "bits per byte means nothing) and reported in the language-modelling section."))
    if "base" in variants:
        blocks.append(Table(["variant"] + headers, tax_rows,
                            "Tax: variant minus base [95% interval]"))
        higher = [t for t in tasks if t not in lm_tasks]
        chart = plots.tax_chart({t: table[t] for t in higher}, names)
        if chart:
            blocks.append(Image("tax.png", chart, "alignment tax per benchmark"))
    else:
        blocks.append(Paragraph("No base result (eval/base.json): the tax cannot be computed."))
    for problem in settings_mismatches(variants):
        blocks.append(Paragraph(f"Warning: {problem}; scores are not comparable until every "
                                "variant is evaluated with the same settings."))
    sections.append(Section("Scores and alignment tax", blocks))
    if lm_tasks:
        sections.append(lm_loss_section(variants, lm_tasks, table, data, n_boot, seed))
    data["scores"] = {n: {t: variants[n].tasks[t].score for t in variants[n].tasks} for n in names}
    data["tax"] = {t: {n: c.tax for n, c in row.items() if c.tax is not None} for t, row in table.items()}

    # -- DTM (and friends) against SFT
    dtm_vs_sft: dict[str, dict[str, dict]] = {}
    summary_diff: dict[str, PairedDiff] = {}
    if "sft" in variants:
        merged = [n for n in names if n.startswith("dtm")]
        blocks = []
        for m in merged:
            diffs = compare_variants(variants["sft"], variants[m], n_boot, seed)
            if m == "dtm":
                summary_diff = diffs
            rows = [[task_header(variants, t), fmt(variants["sft"].tasks[t].score),
                     fmt(variants[m].tasks[t].score),
                     fmt(d.mean, sign=True), f"[{d.low:+.3f}, {d.high:+.3f}]", format_p(d.p_value),
                     str(d.n), d.mark() or "n.s."] for t, d in diffs.items()]
            blocks.append(Table(["benchmark", "sft", m, f"{m} − sft", "95% interval", "p", "items",
                                 "sig."], rows, f"{m} minus SFT, paired on the same items"))
            dtm_vs_sft[m] = {t: d.to_dict() for t, d in diffs.items()}
        if not merged:
            blocks.append(Paragraph("No merged model result (eval/dtm.json) to compare with SFT."))
        sections.append(Section("DTM against plain SFT", blocks))
    data["dtm_vs_sft"] = dtm_vs_sft

    # -- trade-off view
    sections.append(_tradeoff_section(variants, know, instr, data))

    sections += frontier_section(run.root, variants, know, instr, n_boot, seed)

    # -- error sets
    sets = error_sets(variants, know)
    data["error_sets"] = sets
    sections.append(_error_set_section(sets))

    # -- bias, monitor, timings, settings
    bias = read_json(eval_dir / "bias.json")
    if bias:
        sections.append(bias_section(bias))
    curves = monitor_curves(run)
    if curves:
        sections.append(_monitor_section(curves, {j: monitor_summary(run, j) for j in curves}))
    jobs = job_rows(run)
    if jobs:
        rows = [[j["job"], j["status"], format_seconds(j["seconds"])] for j in jobs]
        total = sum(j["seconds"] or 0 for j in jobs if j["status"] == "done")
        sections.append(Section("Run timings", [Table(["job", "status", "time"], rows),
                                               Paragraph(f"Finished jobs took {format_seconds(total)} in all.")]))
    sections.append(_settings_section(variants))

    summary_rows = []
    for t in tasks:
        row = [task_header(variants, t)] + [fmt(variants[n].tasks[t].score) if t in variants[n].tasks
                                            else "-" for n in names]
        d = summary_diff.get(t)
        row.append(f"{d.mean:+.3f} {d.mark() or 'n.s.'}" if d else "-")
        summary_rows.append(row)
    summary = Table(["benchmark"] + names + ["dtm−sft"], summary_rows, "Scores per variant")
    return Report(f"Alignment-tax report: {run.root.name}", sections, summary, data)


def _tradeoff_section(variants, know, instr, data) -> Section:
    if not know or not instr:
        missing = "knowledge/reasoning" if not know else "instruction-following"
        data["tradeoff"] = None
        return Section("Trade-off: instruction following against knowledge", [Paragraph(
            f"No {missing} benchmark in the results, so the trade-off view is skipped. Name them "
            "in report.knowledge_tasks / report.instruction_tasks, or evaluate tasks whose "
            "category is knowledge, reasoning or instruction.")])
    points = tradeoff_points(variants, know, instr)
    line = interpolation_line(points)
    verdicts = [distance_to_line(p, line) for p in points if p.variant.startswith("dtm")]
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
    data["tradeoff"] = {
        "points": {p.variant: {"instruction": p.instruction, "knowledge": p.knowledge} for p in points},
        "line": [p.variant for p in line],
        "verdicts": {v.variant: {"distance": v.distance, "line_knowledge": v.line_knowledge,
                                 "within_noise": v.within_noise, "text": v.text} for v in verdicts},
    }
    return Section("Trade-off: instruction following against knowledge", blocks)


def _error_set_section(sets: dict | None) -> Section:
    title = "Error sets of the sub-models (knowledge tasks)"
    if not sets:
        return Section(title, [Paragraph(
            "Needs per-item results of at least two sub-models (eval/sub_<k>.json) on a "
            "knowledge task.")])
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
                     last_alert(lines, summaries.get(job)) or "-"])
    blocks: list = [Paragraph(
        "The monitor scores a fixed knowledge probe during training and tracks the paper's bias "
        "indicator: the drop of training loss divided by the drop of held-out loss (about 1 "
        "while the model learns what generalises, growing as it fits the data's own quirks).")]
    chart = plots.monitor_chart(curves)
    if chart:
        blocks.append(Image("monitor.png", chart, "monitor curves per training job"))
    blocks.append(Table(["job", "probes", "peak probe acc", "last probe acc", "last ratio", "last alert"], rows))
    return Section("Training monitor", blocks)


def _show(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _settings_section(variants: dict[str, VariantResult]) -> Section:
    keys = ["num_fewshot", "apply_chat_template", "limit", "batch_size", "lm_eval_version"]
    rows = [[n] + [_show(v.settings.get(k, "-")) for k in keys] + [v.model or "-"]
            for n, v in variants.items()]
    return Section("Evaluation settings", [Table(["variant"] + keys + ["model"], rows)])
