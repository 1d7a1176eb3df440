"""Optional MLflow logging of a finished (or running) run: the run directory stays the truth.

`log_run` reads the run directory and logs a parent MLflow run for the DTM run (flattened
config as params, final scores, tax and DTM-SFT as metrics, the report as artifacts) and one
nested child run per trained model with its monitor curves as step-indexed metrics. The store
defaults to SQLite inside the run directory, so nothing is written elsewhere.
Install with `pip install 'dtmerge[mlflow]'` (or mlflow-skinny plus sqlalchemy and alembic).
"""

from __future__ import annotations

import math
import re
from typing import Any

from dtmerge.config import RunConfig
from dtmerge.mlflow_store import import_mlflow, tracking_uri
from dtmerge.rundir import RunDir, read_state_json, rerun_hint

_PARAM_MAX = 500  # MLflow rejects long param values; config values are short anyway


def flatten_params(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested config -> {"train.learning_rate": "0.0003", ...} (MLflow params are strings)."""
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(flatten_params(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: str(obj)[:_PARAM_MAX]}


def _key(text: str) -> str:
    # MLflow keys allow alphanumerics, _ - . / and spaces only.
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", text)


def final_metrics(run: RunDir) -> dict[str, float]:
    """Scores per variant and task, the tax, and DTM minus SFT, from eval/ and report.json."""
    from dtmerge.results.records import load_eval_dir

    metrics: dict[str, float] = {}
    eval_dir = run.root / "eval"
    variants = load_eval_dir(eval_dir) if eval_dir.is_dir() else {}
    base = variants.get("base")
    for name, v in variants.items():
        for task, r in v.tasks.items():
            metrics[_key(f"{name}/{task}")] = r.score
            if base is not None and task in base.tasks and name != "base":
                metrics[_key(f"tax/{name}/{task}")] = r.score - base.tasks[task].score
    report = read_state_json(run.report_dir / "report.json", rerun_hint(f"dtm report {run.root}"),
                             default={})
    for merged, per_task in (report.get("dtm_vs_sft") or {}).items():
        for task, d in per_task.items():
            metrics[_key(f"{merged}_minus_sft/{task}")] = d["mean"]
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _experiment_id(mlflow, name: str, run: RunDir) -> str:
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    # Artifacts beside the store, not in ./mlruns of whatever the working directory is.
    location = (run.root / "mlartifacts").resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def log_run(cfg: RunConfig, run: RunDir, experiment: str | None = None) -> dict[str, Any]:
    """Log a dtmerge run to MLflow: a parent run and a child run per trained model.

    Args:
        cfg: the run's config (params; tracking URI).
        run: the run directory whose files are logged.
        experiment: MLflow experiment name (default "dtmerge").

    Returns:
        {"tracking_uri", "experiment_id", "parent_run_id", "child_run_ids": {model: id}}

    Raises:
        DtmError: MLflow is not installed.
    """
    from dtmerge.report.runinfo import job_rows, model_name_of_job, monitor_curves

    mlflow = import_mlflow()
    uri = tracking_uri(cfg, run)
    mlflow.set_tracking_uri(uri)
    exp_id = _experiment_id(mlflow, experiment or "dtmerge", run)
    curves = monitor_curves(run)
    trained = {model_name_of_job(j["job"]): j for j in job_rows(run) if j["job"].startswith("train")}
    children: dict[str, str] = {}
    with mlflow.start_run(experiment_id=exp_id, run_name=cfg.name,
                          tags={"dtmerge.run_dir": str(run.root.resolve())}) as parent:
        mlflow.log_params(flatten_params(cfg.model_dump(mode="json")))
        metrics = final_metrics(run)
        if metrics:
            mlflow.log_metrics(metrics)
        for name in ("report.md", "report.html", "report.json"):
            if (run.report_dir / name).exists():
                mlflow.log_artifact(str(run.report_dir / name))
        for model in sorted(set(curves) | set(trained)):
            with mlflow.start_run(experiment_id=exp_id, run_name=model, nested=True) as child:
                job = trained.get(model)
                mlflow.set_tags({"dtmerge.model": model, "dtmerge.status": job["status"] if job else "?"})
                if job and job["seconds"] is not None:
                    mlflow.log_metric("train_seconds", float(job["seconds"]))
                for row in curves.get(model, []):
                    step = int(row.get("step", 0))
                    values = {k: float(row[k]) for k in ("probe_acc", "train_loss", "heldout_loss", "ratio")
                              if isinstance(row.get(k), (int, float)) and math.isfinite(row[k])}
                    if values:
                        mlflow.log_metrics(values, step=step)
                children[model] = child.info.run_id
    return {"tracking_uri": uri, "experiment_id": exp_id,
            "parent_run_id": parent.info.run_id, "child_run_ids": children}


def tax_rows(run: RunDir) -> list[list]:
    """The tax table of report.json, one row per (variant, task): tax against base with its
    paired interval, and each merged model minus SFT; read, never recomputed."""

    report = read_state_json(run.report_dir / "report.json", rerun_hint(f"dtm report {run.root}"),
                             default={})
    intervals = report.get("tax_intervals") or {}
    vs_sft = report.get("dtm_vs_sft") or {}
    rows = []
    for task, per_variant in (report.get("tax") or {}).items():
        for variant, tax in per_variant.items():
            if variant == "base":
                continue
            d = intervals.get(task, {}).get(variant) or {}
            s = vs_sft.get(variant, {}).get(task) or {}
            rows.append([variant, task, tax, d.get("low"), d.get("high"), s.get("mean"),
                         s.get("low"), s.get("high")])
    return rows


TAX_COLUMNS = ["variant", "task", "tax", "tax_low", "tax_high", "minus_sft", "minus_sft_low",
               "minus_sft_high"]


def log_run_wandb(cfg: RunConfig, run: RunDir) -> dict[str, Any]:
    """Log a dtmerge run to W&B as `log_run` does to MLflow: a run for the DTM run (config,
    final scores and tax as summary, the tax table, the report files) and one run per trained
    model with its monitor curves, all in the group named after the run.

    Returns:
        {"project", "group", "parent_run_id", "child_run_ids": {model: id}, "dir"}
    """
    from dtmerge.mlflow_store import import_wandb, wandb_environment
    from dtmerge.report.runinfo import job_rows, model_name_of_job, monitor_curves

    wandb = import_wandb()
    env = wandb_environment(cfg, run)
    common = {"project": env["WANDB_PROJECT"], "group": env["WANDB_RUN_GROUP"],
              "entity": env.get("WANDB_ENTITY"), "dir": env["WANDB_DIR"]}
    curves = monitor_curves(run)
    trained = {model_name_of_job(j["job"]): j for j in job_rows(run) if j["job"].startswith("train")}
    parent = wandb.init(name=cfg.name, job_type="run", config=cfg.model_dump(mode="json"),
                        tags=["dtmerge"], reinit="finish_previous", **common)
    try:
        parent.summary.update(final_metrics(run))
        rows = tax_rows(run)
        if rows:
            parent.log({"tax_table": wandb.Table(columns=TAX_COLUMNS, data=rows)})
        files = [run.report_dir / n for n in ("report.md", "report.html", "report.json")]
        if any(f.exists() for f in files):
            artifact = wandb.Artifact(f"{cfg.name}-report", type="report")
            for f in files:
                if f.exists():
                    artifact.add_file(str(f))
            parent.log_artifact(artifact)
        parent_id = parent.id
    finally:
        parent.finish()
    children: dict[str, str] = {}
    for model in sorted(set(curves) | set(trained)):
        job = trained.get(model)
        child = wandb.init(name=model, job_type="train", reinit="finish_previous",
                           config={"dtmerge.model": model, "dtmerge.parent_run": parent_id,
                                   "dtmerge.status": job["status"] if job else "?"}, **common)
        try:
            if job and job["seconds"] is not None:
                child.summary["train_seconds"] = float(job["seconds"])
            for row in curves.get(model, []):
                values = {k: float(row[k]) for k in ("probe_acc", "train_loss", "heldout_loss", "ratio")
                          if isinstance(row.get(k), (int, float)) and math.isfinite(row[k])}
                if values:
                    child.log(values, step=int(row.get("step", 0)))
            children[model] = child.id
        finally:
            child.finish()
    return {"project": common["project"], "group": common["group"], "parent_run_id": parent_id,
            "child_run_ids": children, "dir": common["dir"]}
