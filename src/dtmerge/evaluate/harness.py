"""Score one model variant with lm-evaluation-harness and write the eval JSON contract.

Every variant of a run goes through `evaluate_model` with the same `EvalConfig`, so few-shot
count, chat-template use, generation settings, limit and batch size are identical across
variants; they are recorded in the result together with lm-eval's task versions. Per-item
results are kept so the report can compare variants on the same items.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from dtmerge.config import EvalConfig
from dtmerge.errors import ConfigError, ModelError
from dtmerge.evaluate.groups import resolve_tasks, task_category, task_manager_for
from dtmerge.evaluate.lm_loss import (
    RATIO_METRICS, is_higher_better, item_parts, ratio_value, rolling_item,
)
from dtmerge.rundir import atomic_write_json

log = logging.getLogger("dtmerge.evaluate")

# Primary metric per output type when a task lists several (first listed otherwise).
_PREFERRED = ("acc", "exact_match", "pass@1", "prompt_level_strict_acc", "acc_norm", "mc2",
              "bits_per_byte", "byte_perplexity", "word_perplexity")


def pick_device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def is_adapter_dir(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / "adapter_config.json").is_file()


def build_lm(model: str | Path, cfg: EvalConfig, adapter: str | Path | None = None,
             tokenizer: Any = None):
    """An lm-eval HFLM for a model directory, optionally with a LoRA adapter kept unmerged."""
    from lm_eval.models.huggingface import HFLM

    special = _dtmerge_model_lm(model, cfg, tokenizer)  # ensemble / LoRA-MoE directories
    if special is not None:
        return special
    kwargs: dict[str, Any] = dict(pretrained=str(model), device=pick_device(cfg.device),
                                  batch_size=cfg.batch_size, dtype="auto")
    if adapter is not None:
        kwargs["peft"] = str(adapter)
    if tokenizer is not None:
        kwargs["tokenizer"] = tokenizer
    elif adapter is not None:
        kwargs["tokenizer"] = str(adapter)  # adapters carry the tokenizer used in training
    if kwargs["device"] == "cpu":
        kwargs["dtype"] = "float32"
    try:
        return HFLM(**kwargs)
    except OSError as err:
        raise ModelError(f"cannot load model '{model}' for evaluation: {err}") from None


def _dtmerge_model_lm(model, cfg: EvalConfig, tokenizer: Any = None):
    """lm-eval model for a directory only dtmerge can load (recipes' ensemble, LoRA-MoE)."""
    from dtmerge.evaluate.ensemble import EnsembleLM
    from dtmerge.models.marker import model_kind

    kind = model_kind(model)
    if kind is None:
        return None
    device = pick_device(cfg.device)
    if kind == "ensemble":
        return EnsembleLM.from_dir(model, device=device, tokenizer=tokenizer)
    if kind == "lora_moe":
        from lm_eval.models.huggingface import HFLM
        from transformers import AutoTokenizer

        from dtmerge.models.lora_moe import load_lora_moe

        return HFLM(pretrained=load_lora_moe(model, device=device),
                    tokenizer=tokenizer or AutoTokenizer.from_pretrained(str(model)),
                    batch_size=cfg.batch_size, device=device)
    raise ModelError(f"{model}: unknown dtmerge model kind '{kind}' in dtmerge_model.json")


def evaluate_model(model: str | Path, cfg: EvalConfig, out_json: Path, variant: str,
                   adapter: str | Path | None = None, base_model: str | Path | None = None,
                   tasks: list[str] | None = None, tokenizer: Any = None,
                   samples: dict[str, list[int]] | None = None) -> dict:
    """Evaluate one model on the configured lm-eval tasks and write `out_json` atomically.

    Args:
        model: Model directory or Hub id. For a LoRA adapter directory, pass the adapter here
            or as `adapter` with `base_model`; it is evaluated unmerged through HFLM's `peft=`.
        cfg: Evaluation settings, shared by every variant.
        out_json: Destination of the eval JSON (see the contract in the docs).
        variant: Variant name recorded in the result (`base`, `sft`, `dtm`, `sub_0`...).
        adapter: LoRA adapter directory applied on top of `base_model`.
        base_model: The base model an adapter applies to.
        tasks: Task names overriding `cfg.tasks` (groups such as `paper` are expanded).
        tokenizer: Tokenizer object or directory, e.g. one with the training chat template.
        samples: Per leaf task, the doc indices to score (lm-eval's `samples=`; replaces
            `cfg.limit`): e.g. only the validation items of the item split.

    Returns:
        The result dict that was written.

    Raises:
        ConfigError: No tasks, or an unknown task (with close matches).
        ModelError: The model or adapter cannot be loaded.
    """
    import lm_eval

    if adapter is None and is_adapter_dir(model):
        adapter, model = model, base_model
    if adapter is not None and model is None:
        raise ModelError(f"adapter '{adapter}' needs base_model (the model it was trained from)")
    names = resolve_tasks(tasks if tasks is not None else cfg.tasks, cfg.include_path)
    if not names and not cfg.judge_url:
        raise ConfigError("eval.tasks is empty: name lm-eval tasks, a group (paper, knowledge, "
                          "reasoning, code, instruction) or tasks in eval.include_path")
    manager = task_manager_for(names, cfg.include_path) if names else None
    unsafe = [n for n in names if _runs_code(manager, n)]
    if unsafe and not cfg.allow_code_execution:
        raise ConfigError(
            f"eval.tasks: {', '.join(unsafe)} execute model-written code on this machine; set "
            "eval.allow_code_execution: true to accept that (ideally in a sandbox), or drop them")
    if unsafe:
        os.environ["HF_ALLOW_CODE_EVAL"] = "1"  # the `evaluate` code_eval metric asks for it
    lm = build_lm(model, cfg, adapter, tokenizer)
    raw: dict = {"lm_eval_version": lm_eval.__version__ if hasattr(lm_eval, "__version__")
                 else None}
    rolling = [n for n in names if _output_type(manager, n) == "loglikelihood_rolling"]
    rolling_batch = rolling_batch_size(lm) if rolling else None
    shots = fewshot_counts(cfg, names)
    # Rolling (language-modelling) tasks run on their own with a batch that bounds the logits'
    # memory; every other task keeps the configured batch size. lm-eval takes one few-shot
    # count per call, so tasks with their own count (eval.num_fewshot as a mapping) get theirs.
    calls = [(group, batch, k) for group, batch in
             (([n for n in names if n not in rolling], None), (rolling, rolling_batch))
             for k in dict.fromkeys(shots[n] for n in group)]
    for group, batch, k in calls:
        group = [n for n in group if shots[n] == k]
        with _batch_size(lm, batch), _without_machine_report():
            part = lm_eval.simple_evaluate(
                model=lm, tasks=group, task_manager=manager, num_fewshot=k,
                apply_chat_template=cfg.apply_chat_template, gen_kwargs=cfg.gen_kwargs,
                limit=None if samples else cfg.limit, samples=samples,
                log_samples=True, bootstrap_iters=1000,
                confirm_run_unsafe_code=bool(unsafe),
            )
        raw = _merge_raw(raw, part)
    result = {
        "variant": variant,
        "model": str(adapter if adapter is not None else model),  # the variant's own dir
        "adapter": str(adapter) if adapter is not None else None,
        "base_model": str(base_model) if base_model is not None else str(model),
        "settings": settings_record(cfg, raw) | (
            {"rolling_batch_size": rolling_batch} if rolling_batch is not None else {}),
        "tasks": {name: task_result(raw, name, task_category(manager, name)) for name in names},
    }
    if cfg.judge_url:
        from dtmerge.evaluate.judge import judge_task_result

        result["tasks"]["llm_judge"] = judge_task_result(lm, cfg)
    atomic_write_json(Path(out_json), result)
    return result


def fewshot_counts(cfg: EvalConfig, names: list[str]) -> dict[str, int | None]:
    """Few-shot count of each task in `names` (None: the task's own default).

    eval.num_fewshot as a mapping names tasks as eval.tasks does: a task's own name wins over
    the eval.tasks entry it came from (a group such as `paper`, or a local tag).
    """
    shots = cfg.num_fewshot
    if not isinstance(shots, dict):
        return {n: shots for n in names}
    origin: dict[str, str] = {}
    for entry in cfg.tasks:
        for task in resolve_tasks([entry], cfg.include_path):
            origin.setdefault(task, entry)
    return {n: shots.get(n, shots.get(origin.get(n, n))) for n in names}


# Memory allowed for one batch's logits and their log-softmax in a rolling task.
LOGITS_BUDGET_BYTES = 2 << 30


def rolling_batch_size(lm) -> int | None:
    """Batch size for loglikelihood_rolling tasks: the configured one, lowered so that the
    fp32 logits of a batch of windows (and their log-softmax) stay within
    LOGITS_BUDGET_BYTES. Whole documents are scored at once, so with a large vocabulary
    (Gemma: 262k) a batch of 16 documents of ~700 tokens needs over 20 GB; the scores do not
    depend on the batch size. None leaves lm-eval's "auto" detection alone."""
    size = getattr(lm, "batch_size_per_gpu", None)
    if not isinstance(size, int):
        return None
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    window = min(int(lm.max_length), 2048)
    per_window = 2 * window * vocab * 4
    return max(1, min(size, LOGITS_BUDGET_BYTES // per_window))


class _without_machine_report:
    """Skip the machine report lm-eval's `simple_evaluate` adds to every result.

    It calls torch's `collect_env`, which runs about a dozen subprocesses (`pip list` among
    them, and `nvidia-smi` where there is one): 1.1 s of every evaluation call here, over half
    of a small model's evaluation job, and repeated for every variant, task group and
    frontier candidate. dtmerge keeps none of that report (`settings_record` keeps the library
    and task versions), and lm-eval has no switch for it, so the report's source is replaced
    by a one-line note for the duration of the call; the rest of lm-eval's environment record
    (versions, git hashes) is left as it is.
    """

    NOTE = "not collected (dtmerge skips torch.utils.collect_env: ~1 s of subprocesses per call)"

    def __enter__(self):
        try:
            import torch.utils.collect_env as collect_env
        except ImportError:  # lm-eval then reports "torch not installed" itself
            self.module = None
            return
        self.module, self.saved = collect_env, collect_env.get_pretty_env_info
        collect_env.get_pretty_env_info = lambda: self.NOTE

    def __exit__(self, *exc):
        if self.module is not None:
            self.module.get_pretty_env_info = self.saved


class _batch_size:
    """Temporarily set an HFLM's batch size (None: leave it)."""

    def __init__(self, lm, size: int | None):
        self.lm, self.size, self.saved = lm, size, getattr(lm, "batch_size_per_gpu", None)

    def __enter__(self):
        if self.size is not None:
            self.lm.batch_size_per_gpu = self.size

    def __exit__(self, *exc):
        if self.size is not None:
            self.lm.batch_size_per_gpu = self.saved


def _merge_raw(raw: dict, part: dict) -> dict:
    """lm-eval outputs of two calls as one (per-task dicts merged, first call's rest kept)."""
    merged = dict(part, **{k: v for k, v in raw.items() if k not in ("results", "samples")})
    for key in ("results", "samples", "versions", "n-shot", "higher_is_better", "group_subtasks",
                "configs"):
        merged[key] = {**(raw.get(key) or {}), **(part.get(key) or {})}
    return merged


def _output_type(manager, name: str) -> str | None:
    entry = manager.task_index.get(name) if manager is not None else None
    cfg = (entry.cfg if entry is not None else None) or {}
    return cfg.get("output_type") if isinstance(cfg, dict) else None


def _runs_code(manager, name: str, depth: int = 0) -> bool:
    """Whether task (or group) `name` is marked `unsafe_code` in its YAML."""
    entry = manager.task_index.get(name)
    cfg = (entry.cfg if entry is not None else None) or {}
    if cfg.get("unsafe_code"):
        return True
    members = cfg.get("task") if "group" in cfg else None
    if isinstance(members, list) and depth < 3:
        return any(isinstance(m, str) and _runs_code(manager, m, depth + 1) for m in members)
    return False


def settings_record(cfg: EvalConfig, raw: dict) -> dict:
    return {
        "num_fewshot": cfg.num_fewshot, "apply_chat_template": cfg.apply_chat_template,
        "limit": cfg.limit, "batch_size": cfg.batch_size, "gen_kwargs": cfg.gen_kwargs,
        "lm_eval_version": raw.get("lm_eval_version"),
        "task_versions": dict(raw.get("versions", {})),
        "n_shot": dict(raw.get("n-shot", {})),
    }


def _metric_keys(results: dict) -> list[tuple[str, str]]:
    """(metric, filter) pairs present in one task's results, stderr entries excluded."""
    keys = []
    for key in results:
        if "," in key and "_stderr" not in key:
            metric, filt = key.split(",", 1)
            keys.append((metric, filt))
    return keys


def primary_metric(results: dict, preferred: tuple[str, ...] = _PREFERRED) -> tuple[str, str]:
    keys = _metric_keys(results)
    if not keys:
        raise ConfigError(f"lm-eval returned no metric for a task: {sorted(results)}")
    for name in preferred:
        for metric, filt in keys:
            if metric == name:
                return metric, filt
    return keys[0]


def task_result(raw: dict, name: str, category: str) -> dict:
    """Convert lm-eval's output for one task (or group) into the contract's task entry.

    The entry records the primary metric's direction (`higher_is_better`). For metrics that
    aggregate as a ratio of sums over documents (bits per byte, perplexities of rolling
    log-likelihood tasks) each item keeps its log-likelihood and word/byte counts, and
    `stderr` / `interval` come from a bootstrap of that ratio over documents (lm-eval gives
    none for them).
    """
    results = raw["results"].get(name) or {}
    subtasks = raw.get("group_subtasks", {}).get(name) or []
    leaves = _leaf_tasks(raw, name) if subtasks else [name]
    if not _metric_keys(results):  # a group without aggregate: use its first leaf's metric
        results = raw["results"][leaves[0]]
    metric, filt = primary_metric(results)
    higher = is_higher_better(raw, name if name in (raw.get("higher_is_better") or {})
                              else leaves[0], metric)
    items: list[dict] = []
    for leaf in leaves:
        prefix = f"{leaf}:" if subtasks else ""
        for sample in raw.get("samples", {}).get(leaf, []):
            if sample.get("filter", "none") == filt and metric in sample:
                items.append(_item(sample, metric, prefix))
    items.sort(key=lambda it: (isinstance(it["doc_id"], str), it["doc_id"]))
    parts = [item_parts(it, metric) for it in items] if metric in RATIO_METRICS else []
    ratio = bool(parts) and all(p is not None for p in parts)
    score = results.get(f"{metric},{filt}")
    if (score is None or score == "N/A") and ratio:
        score = ratio_value(metric, [p[0] for p in parts], [p[1] for p in parts])
    elif score is None or score == "N/A":
        score = sum(i["score"] for i in items) / len(items) if items else None
    stderr = results.get(f"{metric}_stderr,{filt}")
    interval = None
    if ratio:
        from dtmerge.evaluate.stats import ratio_interval

        low, high, se = ratio_interval([p[0] for p in parts], [p[1] for p in parts],
                                       RATIO_METRICS[metric].transform, n_boot=1000)
        interval = [low, high]
        if not isinstance(stderr, (int, float)):
            stderr = se
    entry = {
        "metric": metric, "filter": filt, "higher_is_better": higher,
        "aggregation": "ratio_of_sums" if ratio else "mean",
        "score": float(score) if score is not None else None,
        "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
        "n": len(items),
        "metrics": {m: results[f"{m},{f}"] for m, f in _metric_keys(results)
                    if f == filt and isinstance(results[f"{m},{f}"], (int, float))},
        "category": category,
        "subtasks": leaves if subtasks else [],
        "items": items,
    }
    if interval is not None:
        entry["interval"] = interval
    return entry


def _leaf_tasks(raw: dict, name: str) -> list[str]:
    groups = raw.get("group_subtasks", {})
    out: list[str] = []
    for sub in groups.get(name, []):
        out.extend(_leaf_tasks(raw, sub) if groups.get(sub) else [sub])
    return out


def _item(sample: dict, metric: str, prefix: str) -> dict:
    """One per-item record: primary score; choice indices for multiple choice, log-likelihood
    and word/byte counts for language modelling, text otherwise."""
    doc_id = sample["doc_id"]
    doc_id = f"{prefix}{doc_id}" if prefix else doc_id
    rolling = rolling_item(sample) if metric in RATIO_METRICS else None
    if rolling is not None:
        # language modelling: the document's own metric value, and the parts that aggregate
        parts = item_parts(rolling, metric)
        score = float(RATIO_METRICS[metric].transform(parts[0] / parts[1])) if parts else None
        return {"doc_id": doc_id, "score": score, **rolling,
                "pred": None, "gold": None, "response": None}
    value = sample[metric]
    score = float(value) if isinstance(value, (int, float, bool)) else None
    if score is None and isinstance(value, (list, tuple)) and value:
        score = float(value[0]) if isinstance(value[0], (int, float, bool)) else None
    resps = sample.get("filtered_resps") or []
    target = sample.get("target")
    if resps and isinstance(resps[0], (list, tuple)) and resps[0] and \
            isinstance(resps[0][0], (int, float)):
        # multiple choice: one (loglikelihood, is_greedy) per choice
        lls = [r[0] for r in resps]
        pred = max(range(len(lls)), key=lls.__getitem__)
        gold = _gold_index(target, sample)
        return {"doc_id": doc_id, "score": score, "pred": pred, "gold": gold, "response": None,
                "logprobs": [round(float(x), 4) for x in lls]}
    raw_resps = sample.get("resps") or [[None]]
    response = raw_resps[0][0] if raw_resps and raw_resps[0] else None
    pred = resps[0] if resps else None
    return {"doc_id": doc_id, "score": score, "pred": pred if isinstance(pred, str) else None,
            "gold": target if isinstance(target, (str, int, float)) else str(target),
            "response": response if isinstance(response, str) else None}


def _gold_index(target: Any, sample: dict) -> Any:
    if isinstance(target, int):
        return target
    if isinstance(target, list) and target and isinstance(target[0], int):
        return target[0]  # several correct answers (truthfulqa_mc2): keep the first
    if isinstance(target, str) and target.isdigit():
        return int(target)
    choices = [a[1].strip() for a in sample.get("arguments", []) if isinstance(a, (list, tuple))
               and len(a) == 2 and isinstance(a[1], str)]
    if isinstance(target, str) and target.strip() in choices:
        return choices.index(target.strip())
    return target
