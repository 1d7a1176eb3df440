"""Reading evaluation result files (`run_dir/eval/<variant>.json`) into typed records.

The report, `dtm compare`, tracking, the decision and the frontier only read files, so this
module is the one place that knows the evaluation contract and says precisely what is wrong
with a malformed file.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtmerge.errors import DamagedStateError, DtmError
from dtmerge.evaluate.lm_loss import (
    LOWER_IS_BETTER, RATIO_METRICS, item_parts, metric_label, ratio_value,
)
from dtmerge.evaluate.split import ItemSplit
from dtmerge.evaluate.stats import standard_error
from dtmerge.rundir import read_state_json, rerun_hint

# Files in eval/ that are not per-variant results.
NON_VARIANT_FILES = {"bias", "split"}
KNOWLEDGE_CATEGORIES = ("knowledge", "reasoning")
_INTERP = re.compile(r"^interp_(\d+(?:\.\d+)?)$")
_SUB = re.compile(r"^sub_(\d+)$")


class ReportError(DtmError):
    """An evaluation or run file cannot be used for reporting or comparison."""


@dataclass
class TaskResult:
    """One benchmark's result for one variant; `items` maps doc_id -> primary-metric score.

    For language-modelling metrics (bits per byte, perplexity) `higher_is_better` is False
    and `parts` maps doc_id -> (numerator, denominator): the metric over any set of documents
    is computed from their sums (see `dtmerge.evaluate.lm_loss`), never as a mean of `items`.
    """

    name: str
    metric: str
    score: float
    stderr: float | None
    n: int | None
    category: str
    items: dict[Any, float] = field(default_factory=dict)
    preds: dict[Any, Any] = field(default_factory=dict)
    higher_is_better: bool = True
    parts: dict[Any, tuple[float, float]] = field(default_factory=dict)
    interval: tuple[float, float] | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The metric's name with its direction when it is not the usual higher-is-better."""
        return metric_label(self.metric, self.higher_is_better)


@dataclass
class VariantResult:
    """Every benchmark result of one model variant (base, sft, dtm, sub_0, interp_0.5...)."""

    name: str
    path: Path | None
    model: str | None
    settings: dict[str, Any]
    tasks: dict[str, TaskResult]
    seed: int = 0  # training-seed replicate: 0 is the run itself, k is <run>/seeds/seed<k>/


def interp_t(variant: str) -> float | None:
    """The interpolation coefficient of an `interp_<t>` variant, else None."""
    m = _INTERP.match(variant)
    return float(m.group(1)) if m else None


def sub_index(variant: str) -> int | None:
    m = _SUB.match(variant)
    return int(m.group(1)) if m else None


def variant_order(name: str) -> tuple:
    """Sort key: base, sft, dtm, dtm_*, sub-models, interpolations by t, then the rest."""
    fixed = {"base": 0, "sft": 1, "dtm": 2}
    if name in fixed:
        return (fixed[name], 0, name)
    if name.startswith("dtm"):
        return (3, 0, name)
    if (k := sub_index(name)) is not None:
        return (4, k, name)
    if (t := interp_t(name)) is not None:
        return (5, t, name)
    return (6, 0, name)


def _parse_task(where: str, name: str, raw: Any) -> TaskResult:
    if not isinstance(raw, dict):
        raise ReportError(f"{where}: tasks.{name} must be an object, got {type(raw).__name__}")
    if not isinstance(raw.get("score"), (int, float)):
        raise ReportError(
            f"{where}: tasks.{name}.score is missing or not a number ({raw.get('score')!r}); "
            "re-run `dtm eval` to rewrite the file"
        )
    metric = str(raw.get("metric", "score"))
    higher = raw.get("higher_is_better")
    if higher is None:  # files written before dtmerge recorded the direction
        higher = metric not in LOWER_IS_BETTER
    elif not isinstance(higher, bool):
        raise ReportError(f"{where}: tasks.{name}.higher_is_better must be true or false, "
                          f"got {higher!r}")
    items: dict[Any, float] = {}
    preds: dict[Any, Any] = {}
    parts: dict[Any, tuple[float, float]] = {}
    for i, item in enumerate(raw.get("items") or []):
        if not isinstance(item, dict) or "doc_id" not in item or "score" not in item:
            raise ReportError(
                f"{where}: tasks.{name}.items[{i}] needs 'doc_id' and 'score' (got {item!r})"
            )
        part = item_parts(item, metric)
        if part is not None:
            parts[item["doc_id"]] = part
        if item["score"] is None:
            continue
        items[item["doc_id"]] = float(item["score"])
        if "pred" in item:
            preds[item["doc_id"]] = (item.get("pred"), item.get("gold"))
    stderr = raw.get("stderr")
    interval = raw.get("interval")
    return TaskResult(
        name=name,
        metric=metric,
        score=float(raw["score"]),
        stderr=float(stderr) if isinstance(stderr, (int, float)) else None,
        n=raw.get("n"),
        category=str(raw.get("category") or "other"),
        items=items,
        preds=preds,
        higher_is_better=higher,
        # a ratio metric is only recomputed from parts when every item has them
        parts=parts if len(parts) == len(raw.get("items") or []) else {},
        interval=(float(interval[0]), float(interval[1])) if isinstance(interval, list)
        and len(interval) == 2 else None,
        metrics={k: float(v) for k, v in (raw.get("metrics") or {}).items()
                 if isinstance(v, (int, float))},
    )


class DamagedEvalFile(ReportError, DamagedStateError):
    """An eval result file that is truncated or garbled (both a report and a state error)."""


def _eval_recovery(path: Path) -> str:
    """eval/<variant>.json is written by `dtm eval`, frontier/eval/<name>.<items>.json by
    `dtm frontier`: the command that writes a damaged one again."""
    if path.parent.parent.name == "frontier":
        return rerun_hint(f"dtm frontier {path.parent.parent.parent}")
    return rerun_hint(f"dtm eval {path.parent.parent}")


def load_eval_file(path: str | Path, variant: str | None = None) -> VariantResult:
    """Read one evaluation result file.

    Args:
        path: a `<variant>.json` file following the evaluation contract.
        variant: name to use; defaults to the file's "variant" key, then the file stem.

    Raises:
        ReportError: the file is missing, not JSON, or lacks the contract's keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"evaluation file {path} not found")
    try:
        data = read_state_json(path, _eval_recovery(path), kind=None)
    except DamagedStateError as err:
        raise DamagedEvalFile(str(err)) from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise ReportError(
            f"{path}: not an evaluation result (needs a 'tasks' object); "
            "expected the file `dtm eval` writes as eval/<variant>.json"
        )
    name = variant or data.get("variant") or path.stem
    tasks = {t: _parse_task(str(path), t, raw) for t, raw in data["tasks"].items()}
    return VariantResult(name, path, data.get("model"), data.get("settings") or {}, tasks)


def load_eval_dir(eval_dir: str | Path) -> dict[str, VariantResult]:
    """Every variant result in `eval_dir`, in report order (bias.json and the like skipped)."""
    eval_dir = Path(eval_dir)
    found = {}
    for p in sorted(eval_dir.glob("*.json")):
        if p.stem in NON_VARIANT_FILES or p.name.startswith("."):
            continue
        found[p.stem] = load_eval_file(p, variant=p.stem)
    return dict(sorted(found.items(), key=lambda kv: variant_order(kv[0])))


def all_tasks(variants: dict[str, VariantResult]) -> list[str]:
    """Task names across variants, in first-seen order."""
    names: dict[str, None] = {}
    for v in variants.values():
        names.update(dict.fromkeys(v.tasks))
    return list(names)


def task_category(variants: dict[str, VariantResult], task: str) -> str:
    for v in variants.values():
        if task in v.tasks:
            return v.tasks[task].category
    return "other"


def higher_is_better(variants: dict[str, VariantResult], task: str) -> bool:
    for v in variants.values():
        if task in v.tasks:
            return v.tasks[task].higher_is_better
    return True


def split_tasks(
    variants: dict[str, VariantResult],
    knowledge: list[str] | None = None,
    instruction: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """(knowledge/reasoning tasks, instruction-following tasks) that are averaged as scores.

    Explicit lists (cfg.report) win; otherwise tasks are grouped by the category recorded in
    the evaluation files. Lower-is-better tasks (language-modelling loss) are never averaged
    with accuracies: see `lm_loss_tasks`.
    """
    tasks = [t for t in all_tasks(variants) if higher_is_better(variants, t)]
    know = [t for t in knowledge if t in tasks] if knowledge else [
        t for t in tasks if task_category(variants, t) in KNOWLEDGE_CATEGORIES
    ]
    instr = [t for t in instruction if t in tasks] if instruction else [
        t for t in tasks if task_category(variants, t) == "instruction"
    ]
    return know, instr


def lm_loss_tasks(variants: dict[str, VariantResult]) -> list[str]:
    """Tasks whose metric is lower-is-better (bits per byte, perplexity): the forgetting
    measure in language-modelling loss, reported on its own."""
    return [t for t in all_tasks(variants) if not higher_is_better(variants, t)]


def settings_mismatches(variants: dict[str, VariantResult]) -> list[str]:
    """Evaluation settings that differ between variants (they must be identical to compare)."""
    keys = ("num_fewshot", "apply_chat_template", "limit", "gen_kwargs")
    problems = []
    for key in keys:
        seen = {name: v.settings.get(key) for name, v in variants.items() if key in v.settings}
        if len({json.dumps(x, sort_keys=True, default=str) for x in seen.values()}) > 1:
            detail = ", ".join(f"{n}={val!r}" for n, val in seen.items())
            problems.append(f"'{key}' differs between variants ({detail})")
    return problems


def restrict_task(task: TaskResult, split: ItemSplit, part: str) -> TaskResult:
    """`task` with only the items of `part`; score, standard error and n recomputed."""
    keep = set(split.ids(task.name, list(task.items) + list(task.parts), part))
    items = {d: s for d, s in task.items.items() if d in keep}
    parts = {d: p for d, p in task.parts.items() if d in keep}
    if parts and task.metric in RATIO_METRICS:
        score = ratio_value(task.metric, [p[0] for p in parts.values()],
                            [p[1] for p in parts.values()])
    elif items:
        score = sum(items.values()) / len(items)
    else:
        raise ReportError(f"task {task.name}: no {part} items (of {len(task.items)}); raise "
                          "eval.validation_fraction's share of that part or score more items")
    return dataclasses.replace(
        task, score=float(score), items=items, parts=parts, n=len(items) or len(parts),
        stderr=standard_error(list(items.values())) if not parts else None, interval=None,
        preds={d: p for d, p in task.preds.items() if d in keep})


def restrict_variant(variant: VariantResult, split: ItemSplit, part: str) -> VariantResult:
    return dataclasses.replace(variant, tasks={n: restrict_task(t, split, part)
                                               for n, t in variant.tasks.items()})
