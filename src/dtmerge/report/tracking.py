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
from dtmerge.rundir import RunDir

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
    from dtmerge.report.results import load_eval_dir
    from dtmerge.report.runinfo import read_json

    metrics: dict[str, float] = {}
    eval_dir = run.root / "eval"
    variants = load_eval_dir(eval_dir) if eval_dir.is_dir() else {}
    base = variants.get("base")
    for name, v in variants.items():
        for task, r in v.tasks.items():
            metrics[_key(f"{name}/{task}")] = r.score
            if base is not None and task in base.tasks and name != "base":
                metrics[_key(f"tax/{name}/{task}")] = r.score - base.tasks[task].score
    report = read_json(run.report_dir / "report.json") or {}
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
