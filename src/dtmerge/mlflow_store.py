"""Where a run's MLflow store and W&B files go, and importing either tracker with a clear
error when its extra is missing.

Shared by live training curves (train) and the logging of finished runs (report.tracking), so
it lives below both.
"""

from __future__ import annotations

import os

from dtmerge.config import RunConfig
from dtmerge.errors import DtmError
from dtmerge.rundir import RunDir


def import_mlflow():
    try:
        import mlflow
    except ImportError:
        raise DtmError(
            "tracking.mlflow is true but MLflow is not installed: run "
            "`pip install 'dtmerge[mlflow]'`, or set tracking.mlflow=false") from None
    return mlflow


def tracking_uri(cfg: RunConfig, run: RunDir) -> str:
    """cfg.tracking.mlflow_tracking_uri, else a SQLite store in the run directory."""
    if cfg.tracking.mlflow_tracking_uri:
        return cfg.tracking.mlflow_tracking_uri
    return f"sqlite:///{(run.root / 'mlflow.db').resolve()}"


def import_wandb():
    try:
        import wandb
    except ImportError:
        raise DtmError(
            "tracking.wandb is true but wandb is not installed: run "
            "`pip install 'dtmerge[wandb]'`, or set tracking.wandb=false") from None
    return wandb


WANDB_PROJECT = "dtmerge"


def wandb_environment(cfg: RunConfig, run: RunDir) -> dict[str, str]:
    """The W&B settings of a run's jobs, as the environment wandb.init (and transformers'
    callback) reads: project and entity from the config, every job grouped under the run's
    name, files under the run directory unless WANDB_DIR says otherwise."""
    env = {"WANDB_PROJECT": cfg.tracking.wandb_project or WANDB_PROJECT,
           "WANDB_RUN_GROUP": cfg.name,
           "WANDB_DIR": os.environ.get("WANDB_DIR") or str(run.root.resolve())}
    if cfg.tracking.wandb_entity:
        env["WANDB_ENTITY"] = cfg.tracking.wandb_entity
    return env
