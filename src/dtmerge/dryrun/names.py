"""Preflight: resolve every name a later stage resolves, before any training.

A typo in `merge.method` or `eval.tasks` used to surface only after all K+1 trainings (GPU-days
at 7B). Each check below asks the same registry or library the stage itself asks (merge
methods, dispersal strategies, transformers' schedulers, lm-eval's task index with the include
paths), so the preflight and the stage can never disagree about a name.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from dtmerge.config import RunConfig
from dtmerge.errors import DtmError
from dtmerge.evaluate.stage import VARIANT_KEYWORDS
from dtmerge.rundir import STAGE_ALIASES, STAGES



def check_names(cfg: RunConfig, stages: list[str] | None, found: list[str]) -> None:
    """Append an "error: ..." finding for every name a stage of `stages` would reject."""
    wanted = {STAGE_ALIASES.get(s, s) for s in stages or STAGES}
    checks = [("prepare", _check_strategy), ("train", _check_scheduler),
              ("build", _check_merge_method), ("eval", _check_variants), ("eval", _check_tasks)]
    for stage, check in checks:
        if stage in wanted:
            try:
                check(cfg)
            except DtmError as err:
                found.append(f"error: {err}")


def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=2)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _check_strategy(cfg: RunConfig) -> None:
    from dtmerge.disperse.registry import STRATEGIES

    STRATEGIES.check(cfg.disperse.strategy)
    if cfg.disperse.num_portions == 1:
        raise DtmError("disperse.num_portions=1 trains one sub-model on all the data: that is "
                       "plain SFT (train.sft_baseline already trains it) and merging one model "
                       "changes nothing; use num_portions >= 2")


def scheduler_names() -> list[str]:
    """transformers' learning-rate scheduler names: the values of its `SchedulerType`.

    Importing that enum imports transformers' trainer utilities, PEFT and torch (about 5 s
    here), which the driver of a pooled or Ray run otherwise never needs: its workers train.
    So the values are read from the enum's source file, unexecuted, and from the enum itself
    when it is loaded already or its source cannot be read that way (a test checks the two
    agree for the installed transformers)."""
    import sys

    if "transformers.trainer_utils" not in sys.modules:
        names = _scheduler_names_from_source()
        if names:
            return names
    from transformers import SchedulerType

    return [s.value for s in SchedulerType]


def _scheduler_names_from_source() -> list[str]:
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec("transformers")  # finds it without importing it
        source = Path(spec.origin).with_name("trainer_utils.py").read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (AttributeError, TypeError, OSError, SyntaxError, ValueError):
        return []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "SchedulerType":
            return [item.value.value for item in node.body
                    if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant)
                    and isinstance(item.value.value, str)]
    return []


def _check_scheduler(cfg: RunConfig) -> None:
    names = scheduler_names()
    if cfg.train.lr_scheduler not in names:
        raise DtmError(f"train.lr_scheduler: unknown scheduler '{cfg.train.lr_scheduler}'."
                       f"{_did_you_mean(cfg.train.lr_scheduler, names)} Valid: {', '.join(names)}")


def _check_merge_method(cfg: RunConfig) -> None:
    from dtmerge.merge.methods import get_method

    get_method(cfg.merge.method).check_params(dict(cfg.merge.params))


def _check_variants(cfg: RunConfig) -> None:
    models = cfg.run_dir / "models"
    recipe_labels = {e.variant for e in cfg.recipes or []}
    for name in cfg.eval.variants:
        if name not in VARIANT_KEYWORDS and name not in recipe_labels and not (models / name).is_dir():
            raise DtmError(f"eval.variants: '{name}' is neither one of "
                           f"{', '.join(VARIANT_KEYWORDS)} nor a model directory under {models}."
                           f"{_did_you_mean(name, VARIANT_KEYWORDS)}")


def _check_tasks(cfg: RunConfig) -> None:
    """Task names against lm-eval's own index plus eval.include_path; code-running tasks
    (`unsafe_code: true`, local ones included) need eval.allow_code_execution."""
    ec = cfg.eval
    if not ec.tasks or any(not Path(d).expanduser().is_dir() for d in ec.include_path):
        return  # no tasks, or a missing include path (reported on its own)
    from dtmerge.evaluate.groups import resolve_tasks, task_manager_for
    from dtmerge.evaluate.harness import _runs_code as runs_code

    names = resolve_tasks(ec.tasks, ec.include_path)
    manager = task_manager_for(names, ec.include_path)  # raises for unknown names
    unsafe = [n for n in names if runs_code(manager, n)]
    if unsafe and not ec.allow_code_execution:
        raise DtmError(f"eval tasks {', '.join(unsafe)} execute model-written code "
                       "(unsafe_code: true): set eval.allow_code_execution: true (ideally in a "
                       "sandbox) or drop them")
