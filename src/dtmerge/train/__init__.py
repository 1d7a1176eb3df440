"""Train stage: one function trains one model on one portion (`train_model`);
`train_stage` runs the K sub-models and the SFT baseline of a run.

Public names are imported lazily: the driver of a pooled or Ray run plans and records jobs
without importing torch, transformers or PEFT (6 s here), which only its workers need.
"""

from __future__ import annotations

from dtmerge.registry import lazy_exports

_EXPORTS = {
    "plan_jobs": "dtmerge.train.stage",
    "train_stage": "dtmerge.train.stage",
    "train_model": "dtmerge.train.trainer",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
