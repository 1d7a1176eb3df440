"""The Hub model card (README.md) of a model dtmerge ships, with the run's evidence in it.

Built with huggingface_hub's ModelCard/ModelCardData: a YAML header the Hub reads (base_model,
library_name, tags, datasets, and a model-index of this run's scores through EvalResult) and a
body with the recipe, the merge, the alignment-tax table against base and SFT with intervals,
the verdict against the interpolation line, the run's recommendation and how to reproduce it.
Every number is read from report/report.json (`dtm report`) and eval/: nothing is recomputed
here, so the card can never disagree with the report.
"""

from __future__ import annotations

import re
from pathlib import Path

from dtmerge.rundir import RunDir, atomic_write_text

CARD_FILE = "README.md"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_id(path: str | None) -> str | None:
    """`path` when it names a Hub repository (org/name), not a local path or a pypi: model."""
    if not path or not _HUB_ID.match(path) or Path(path).exists():
        return None
    return path


def _read_json(path: Path, writer: str) -> dict | None:
    """A state file of the run (None when missing); damaged: an error saying how to recover."""
    from dtmerge.rundir import read_state_json, rerun_hint

    return read_state_json(path, rerun_hint(writer), default=None)


def _interval(d: dict | None) -> str:
    if not d or d.get("mean") is None:
        return "-"
    mark = "" if not d.get("significant") else " *"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{mark}"


def _score(report: dict, variant: str, task: str) -> str:
    value = (report.get("scores") or {}).get(variant, {}).get(task)
    return "-" if value is None else f"{value:.3f}"


def _task_metrics(run: RunDir, variant: str) -> dict[str, str]:
    """The metric name of each task in eval/<variant>.json (for the model-index)."""
    data = _read_json(run.eval_file(variant), f"dtm eval {run.root}") or {}
    return {t: str(raw.get("metric", "score")) for t, raw in (data.get("tasks") or {}).items()
            if isinstance(raw, dict)}


def eval_results(run: RunDir, report: dict | None, variant: str):
    """This variant's scores in report.json as huggingface_hub EvalResults (the model-index)."""
    from huggingface_hub import EvalResult

    scores = ((report or {}).get("scores") or {}).get(variant) or {}
    metrics = _task_metrics(run, variant)
    return [EvalResult(task_type="text-generation", dataset_type=task, dataset_name=task,
                       metric_type=metrics.get(task, "score"), metric_value=round(float(v), 6))
            for task, v in scores.items() if isinstance(v, (int, float))]


def _recipe_text(cfg, recipes: dict, variant: str) -> list[str]:
    t, d = cfg.train, cfg.disperse
    method = (f"LoRA (r={t.lora.r}, alpha={t.lora.alpha:g}, dropout={t.lora.dropout:g})"
              if t.method == "lora" else "full fine-tuning")
    lines = [f"- Base model: `{cfg.model.path}`",
             f"- Instruction data: `{cfg.data.path}` (format {cfg.data.format})",
             f"- Training: {method}, learning rate {t.learning_rate:g}, {t.lr_scheduler} schedule, "
             f"batch {t.batch_size} x {t.grad_accum} accumulation, max length {t.max_length}, "
             + (f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.num_epochs:g} epochs")
             + f", seed {t.seed}",
             f"- Disperse: {d.strategy} split into K={d.num_portions} portions, one sub-model "
             "trained on each from the same base"]
    recipe = recipes.get(variant)
    if recipe:
        lines.append(f"- This model is recipe `{recipe.get('recipe')}` of the run "
                     f"(trained jobs: {', '.join(recipe.get('train_jobs') or []) or 'none'})")
    return lines


def _merge_text(cfg, variant: str) -> str:
    m = cfg.merge
    weights = ", ".join(f"{w:g}" for w in m.weights) if m.weights else "uniform (1/K)"
    text = (f"The K sub-models are merged in weight space with `{m.method}` (weights {weights}"
            + (f", params {m.params}" if m.params else "")
            + (f", interpolated toward the base by {m.base_interpolation:g}"
               if m.base_interpolation is not None else "") + ").")
    if not variant.startswith("dtm"):
        text += f" This card's model, `{variant}`, is another variant of the same run."
    return text


def _tax_table(report: dict, variant: str) -> list[str]:
    tasks = report.get("tasks") or []
    intervals = report.get("tax_intervals") or {}
    vs_sft = (report.get("dtm_vs_sft") or {}).get(variant) or {}
    lower = [t for t, up in (report.get("higher_is_better") or {}).items() if up is False]
    own = variant != "sft"  # the card of SFT itself has no separate SFT columns
    cols = ["benchmark", "base", "sft", *([variant] if own else []), f"{variant} − base [95%]",
            *(["sft − base [95%]", f"{variant} − sft [95%]"] if own else [])]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for task in tasks:
        row = [task + (" (lower is better)" if task in lower else ""),
               _score(report, "base", task), _score(report, "sft", task)]
        if own:
            row.append(_score(report, variant, task))
        row.append(_interval(intervals.get(task, {}).get(variant)))
        if own:
            row += [_interval(intervals.get(task, {}).get("sft")), _interval(vs_sft.get(task))]
        lines.append("| " + " | ".join(row) + " |")
    planes = ((report.get("answer") or {}).get("vs_sft") or {}).get(variant) or {}
    if planes:
        lines += ["", f"Per plane, {variant} minus SFT (stratified over the plane's items):", "",
                  "| plane | difference [95%] |", "|---|---|"]
        lines += [f"| {plane} | {_interval(d)} |" for plane, d in planes.items()]
    return lines


def _verdict_lines(report: dict, variant: str) -> list[str]:
    verdict = ((report.get("tradeoff") or {}).get("verdicts") or {}).get(variant)
    decision = (report.get("answer") or {}).get("decision") or {}
    words = [f"{p['plane']}: {p['word']}" for c in decision.get("candidates") or []
             if c.get("name") == variant for p in c.get("planes") or [] if p.get("word")]
    lines = [verdict["text"]] if verdict and verdict.get("text") else []
    if words:
        lines.append(f"Against the line on validation items, {variant}: {'; '.join(words)}.")
    return lines or [f"The report gives no verdict against the line for `{variant}` (the line "
                     "compares merged models and recipes with base-to-SFT interpolation)."]


def _recommendation_lines(report: dict, variant: str) -> list[str]:
    answer = report.get("answer") or {}
    if not answer:
        return ["The report has no Answer (it needs an instruction-following task and a "
                "knowledge task)."]
    ship = answer.get("ship")
    lines = list(answer.get("sentences") or [answer.get("reason", "")])
    lines.append("**This model is the run's recommendation.**" if ship == variant else
                 f"The run recommends `{ship}`; this card describes `{variant}`.")
    return lines


def _paragraphs(lines: list[str]) -> list[str]:
    return [part for line in lines for part in (line, "")]


def card_text(run: RunDir, variant: str, model_dir: Path) -> str:
    """The card of `variant` of `run`, to be written into `model_dir`, as Markdown text."""
    import yaml
    from huggingface_hub import ModelCard, ModelCardData

    from dtmerge.rundir import load_run_config

    cfg = load_run_config(run.root)
    report = _read_json(run.report_dir / "report.json", f"dtm report {run.root}")
    recipes = _read_json(run.root / "recipes.json", f"dtm merge {run.root}") or {}
    adapter = (Path(model_dir) / "adapter_config.json").is_file()
    data = ModelCardData(
        base_model=hub_id(cfg.model.path), library_name="peft" if adapter else "transformers",
        tags=["dtmerge", "disperse-then-merge", "alignment-tax", "model-merging"]
        + (["lora"] if cfg.train.method == "lora" else []),
        datasets=[d for d in [hub_id(cfg.data.path)] + [hub_id(s.path) for s in cfg.data.mix] if d]
        or None,
        model_name=f"{cfg.name}-{variant}",
        eval_results=eval_results(run, report, variant) or None,
        pipeline_tag="text-generation")
    body = [f"# {cfg.name}: {variant}", "",
            f"`{variant}` of the dtmerge run `{cfg.name}`: Disperse-Then-Merge instruction tuning "
            "(Fu et al., Findings of ACL 2024) with the run's alignment-tax evidence.", "",
            "## Recipe", "", *_recipe_text(cfg, recipes, variant), "",
            "## Merge", "", _merge_text(cfg, variant), ""]
    if report is None:
        body += ["## Evidence", "", f"This run has no report/report.json yet, so this card carries "
                 f"no scores: run `dtm report {run.root}` and export the model again to get the "
                 "alignment-tax table, the verdict and the recommendation.", ""]
    else:
        body += ["## Alignment tax", "",
                 "Scores on the run's benchmarks; differences are paired bootstrap 95% "
                 "intervals on the same items (* : the interval excludes zero), as in the "
                 "run's report.", "", *_tax_table(report, variant), "",
                 "## Against the interpolation line", "",
                 "The honest baseline is training less: the line from the base to SFT in weight "
                 "space.", "", *_paragraphs(_verdict_lines(report, variant)),
                 "## Recommendation", "", *_paragraphs(_recommendation_lines(report, variant))]
    # Resolved (every default filled in), so a newer dtmerge's defaults cannot change the run.
    config = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    body += ["## Reproduce", "", "With dtmerge installed, save the resolved config below as "
             "`config.yaml` and run:", "", "```bash", "dtm run config.yaml",
             f"dtm export {Path(cfg.runs_dir) / cfg.name} {variant} --out {cfg.name}-{variant}",
             "```", "",
             "```yaml", config.rstrip("\n"), "```", ""]
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)
    return str(ModelCard(content))


def write_model_card(run_dir: str | Path, variant: str, model_dir: str | Path) -> Path:
    """Write README.md (the model card of `variant`) into `model_dir`, atomically."""
    run, model_dir = RunDir(run_dir), Path(model_dir)
    path = model_dir / CARD_FILE
    atomic_write_text(path, card_text(run, variant, model_dir))
    return path
