"""Evaluation stage: lm-eval scoring of every variant, the knowledge monitor, bias detection.

Public names are imported lazily so that `import dtmerge.evaluate` does not pull in lm-eval.
"""

from __future__ import annotations

from dtmerge.registry import lazy_exports

_EXPORTS = {
    "evaluate_model": "dtmerge.evaluate.harness",
    "evaluate_stage": "dtmerge.evaluate.stage",
    "TASK_GROUPS": "dtmerge.evaluate.groups",
    "resolve_tasks": "dtmerge.evaluate.groups",
    "KnowledgeMonitor": "dtmerge.evaluate.monitor",
    "build_monitor": "dtmerge.evaluate.monitor",
    "detect_decline": "dtmerge.evaluate.monitor",
    "build_probe": "dtmerge.evaluate.probe",
    "position_bias": "dtmerge.evaluate.bias",
    "boilerplate_bias": "dtmerge.evaluate.bias",
    "token_loss_shift": "dtmerge.evaluate.bias",
    "bias_stage": "dtmerge.evaluate.bias",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
