"""Reuse of finished task results when only the task list of an evaluation changed.

Adding one benchmark to `eval.tasks` changes every variant's eval fingerprint. Without this,
every variant would be scored again on every task (on a CPU that is minutes per variant per
task). A previous result is reused task by task only when it is provably the same work: the
manifest's fingerprint of the previous job equals the fingerprint the *current* settings,
model and base would have had with the previous task list. Anything else (another model,
limit, few-shot count, batch size, chat template...) evaluates everything again.

A key added to the eval config after the previous run, left at its default, does not change
what is scored (that is what an additive key means), so the previous fingerprint is also
looked for without such keys.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Iterable

from dtmerge.rundir import read_state_json, rerun_hint

JUDGE_TASK = "llm_judge"


def previous_tasks(job: dict | None, result: dict) -> list[str]:
    """The `eval.tasks` list the previous job ran with: recorded in the job since dtmerge
    records it, else the task names of its result file (equal when no group was named)."""
    if job and isinstance(job.get("eval_tasks"), list):
        return list(job["eval_tasks"])
    return [t for t in result.get("tasks", {}) if t != JUDGE_TASK]


def settings_variants(settings: dict, defaults: dict, max_dropped: int = 3) -> Iterable[dict]:
    """`settings`, then `settings` without up to `max_dropped` keys that hold their default."""
    yield settings
    droppable = [k for k, v in settings.items() if k in defaults and defaults[k] == v]
    for r in range(1, min(max_dropped, len(droppable)) + 1):
        for keys in itertools.combinations(droppable, r):
            yield {k: v for k, v in settings.items() if k not in keys}


def reusable_results(out: Path, job: dict | None,
                     fingerprints_for: Callable[[list[str]], Iterable[str]],
                     wanted: list[str]) -> dict[str, Any]:
    """Task entries of `out` that can stand for `wanted` tasks without re-running them.

    Args:
        out: the variant's existing eval JSON.
        job: its manifest job record (status and fingerprint of the run that wrote `out`).
        fingerprints_for: the eval fingerprints this variant's current settings may have had
            with a given task list (see `settings_variants`).
        wanted: the resolved task names to score now.

    Returns:
        task name -> the stored entry, for the wanted tasks already scored identically.
    """
    if not job or job.get("status") != "done" or not out.is_file():
        return {}
    result = read_state_json(out, rerun_hint(f"dtm eval {out.parent.parent}"))
    if not isinstance(result, dict) or not isinstance(result.get("tasks"), dict):
        return {}
    if job.get("fingerprint") not in set(fingerprints_for(previous_tasks(job, result))):
        return {}
    return {t: result["tasks"][t] for t in wanted if t in result["tasks"]}


def merge_results(previous: Path, fresh: dict, reused: dict[str, Any], order: list[str]) -> dict:
    """The variant's result with reused and freshly scored tasks, in `order`; the settings
    record merges both runs' task versions and shot counts."""
    old = read_state_json(previous, rerun_hint(f"dtm eval {previous.parent.parent}"))
    settings = dict(fresh["settings"])
    for key in ("task_versions", "n_shot"):
        merged = {t: v for t, v in (old.get("settings", {}).get(key) or {}).items() if t in reused}
        merged.update(settings.get(key) or {})
        settings[key] = merged
    tasks = {**reused, **fresh["tasks"]}
    return dict(fresh, settings=settings,
                tasks={t: tasks[t] for t in order + [t for t in tasks if t not in order]})
