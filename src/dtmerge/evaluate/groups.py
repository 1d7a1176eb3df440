"""Task groups matching the paper, task categories, and task-name validation.

`eval.tasks` may name lm-eval tasks directly, or one of the groups below (`paper` expands to
all of them). Named tasks download from the Hugging Face Hub, so they work for users with a
network; local task directories (`eval.include_path`) work offline.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from dtmerge.errors import ConfigError

CATEGORIES = ("knowledge", "reasoning", "instruction", "code", "other")

# The paper's nine benchmarks plus IFEval for instruction following (lm-eval task names).
TASK_GROUPS: dict[str, list[str]] = {
    "knowledge": ["mmlu", "arc_challenge", "openbookqa", "race", "truthfulqa_mc2"],
    "reasoning": ["gsm8k", "bbh"],
    "code": ["humaneval", "mbpp"],
    "instruction": ["ifeval"],
}
TASK_GROUPS["paper"] = [t for g in ("knowledge", "reasoning", "code", "instruction")
                        for t in TASK_GROUPS[g]]

# Category of named tasks (and of their subtasks, matched by prefix).
_CATEGORY_BY_TASK = {task: group for group, tasks in TASK_GROUPS.items() if group != "paper"
                     for task in tasks}
_CATEGORY_BY_TASK.update({"arc_easy": "knowledge", "truthfulqa_mc1": "knowledge",
                          "hellaswag": "knowledge", "piqa": "knowledge",
                          "winogrande": "reasoning", "mmlu_pro": "knowledge"})


def category_from_spec(name: str, tags: Iterable[str] = (), cfg: dict | None = None) -> str:
    """The category of a task: a YAML `tag` or `metadata.category`, else the built-in map.

    Args:
        name: lm-eval task name.
        tags: The task's tags (from its YAML `tag:` key).
        cfg: The task's raw YAML config, if known.

    Returns:
        One of `CATEGORIES`.
    """
    meta = (cfg or {}).get("metadata") or {}
    if isinstance(meta, dict) and meta.get("category") in CATEGORIES:
        return meta["category"]
    for tag in tags:
        if tag in CATEGORIES:
            return tag
    if name in _CATEGORY_BY_TASK:
        return _CATEGORY_BY_TASK[name]
    for task, category in _CATEGORY_BY_TASK.items():
        if name.startswith(task + "_"):
            return category
    return "other"


@lru_cache(maxsize=8)
def _task_manager(include_path: tuple[str, ...], defaults: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_path) or None, include_defaults=defaults)


def task_manager_for(tasks: list[str], include_path: Iterable[str | Path]):
    """A cached lm-eval TaskManager that knows every task in `tasks`.

    Indexing lm-eval's ~15k built-in task configs costs about 4 s, so when every task is found
    in the local directories only those are indexed; the manager is built once per process.

    Raises:
        ConfigError: A task is unknown; the message lists close matches.
    """
    paths = tuple(sorted(str(Path(p).expanduser().resolve()) for p in include_path))
    for p in paths:
        if not Path(p).is_dir():
            raise ConfigError(f"eval.include_path: '{p}' is not a directory of task YAML files")
    if paths:
        local = _task_manager(paths, False)
        if all(t in local.task_index for t in tasks):
            return local
    manager = _task_manager(paths, True)
    unknown = [t for t in tasks if t not in manager.task_index]
    if unknown:
        lines = []
        for t in unknown:
            close = difflib.get_close_matches(t, manager.all_tasks + list(TASK_GROUPS), n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            lines.append(f"unknown task '{t}'.{hint}")
        raise ConfigError("eval.tasks: " + " ".join(lines) + " Groups: "
                          + ", ".join(TASK_GROUPS) + "; local task dirs go in eval.include_path")
    return manager


def resolve_tasks(names: Iterable[str], include_path: Iterable[str | Path] = ()) -> list[str]:
    """Concrete task (or lm-eval group) names for `eval.tasks`.

    A name found in the local task directories wins (a local tag expands to its tasks, so each
    gets its own result); otherwise a dtmerge group (`paper`, `knowledge`...) expands to the
    paper's named tasks.
    """
    include_path = list(include_path)
    local = _task_manager(tuple(sorted(str(Path(p).expanduser().resolve()) for p in include_path)),
                          False) if include_path else None
    out: list[str] = []
    for name in names:
        entry = local.task_index.get(name) if local is not None else None
        if entry is not None and entry.kind.name == "TAG":
            found = sorted(entry.tags)
        elif entry is not None:
            found = [name]
        else:
            found = TASK_GROUPS.get(name, [name])
        out.extend(t for t in found if t not in out)
    return out


def task_category(manager, name: str) -> str:
    """Category of `name` as indexed by `manager` (tags and metadata of its YAML)."""
    entry = manager.task_index.get(name)
    if entry is None:
        return category_from_spec(name)
    return category_from_spec(name, entry.tags or (), entry.cfg)
