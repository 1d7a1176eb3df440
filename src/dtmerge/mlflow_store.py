"""Where a run's MLflow store is, and importing MLflow with a clear error when the extra is missing.

Shared by live training curves (train) and the logging of finished runs (report.tracking), so
it lives below both.
"""

from __future__ import annotations

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
