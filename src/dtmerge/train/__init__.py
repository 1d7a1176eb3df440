"""Training: one function trains one model on one data file (`train_model`); `train_jobs`
runs a run's jobs (which the recipes list) on the configured executor.

Public names are imported lazily: the driver of a pooled or Ray run plans and records jobs
without importing torch, transformers or PEFT (6 s here), which only its workers need.
"""

from __future__ import annotations

from dtmerge.registry import lazy_exports

_EXPORTS = {
    "train_jobs": "dtmerge.train.stage",
    "train_model": "dtmerge.train.trainer",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
