"""The evaluate stage: every variant of a run scored with identical settings.

Each variant is its own manifest job (`eval:<variant>`) whose fingerprint covers the eval
settings and a hash of the model directory, so a rerun skips finished evaluations and redoes
those whose model or settings changed. Interpolations base + t*(sft - base) are built first
(job `interp:<t>`), then evaluated as `interp_<t>`. When only `eval.tasks` changed, task
results already scored with the same model and settings are reused (see `reuse.py`), so
adding one benchmark scores only that benchmark.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dtmerge.config import EvalConfig, RunConfig
from dtmerge.errors import ConfigError
from dtmerge.models import resolve_model_path
from dtmerge.evaluate.groups import resolve_tasks
from dtmerge.evaluate.reuse import merge_results, reusable_results, settings_variants
from dtmerge.evaluate.split import SPLIT_KEYS, record_split
from dtmerge.rundir import (RunDir, atomic_write_json, hash_obj, hash_path, interp_name,
                            producer_job, run_job)

# eval.variants entries that name a kind of variant rather than a model directory
VARIANT_KEYWORDS = ("base", "sft", "dtm", "submodels", "interpolation", "best")


@dataclass(frozen=True)
class Variant:
    name: str
    model: str  # model dir, adapter dir or Hub id


def plan_variants(cfg: RunConfig, run: RunDir, log=print) -> list[Variant]:
    """The variants to score, in order; missing models are skipped with a message."""
    base = resolve_model_path(cfg.model)
    out: list[Variant] = []
    for name in cfg.eval.variants:
        if name == "base":
            out.append(Variant("base", base))
        elif name == "submodels":
            out += [Variant(f"sub_{k}", str(run.model(f"sub_{k}")))
                    for k in range(cfg.disperse.num_portions)]
        elif name == "best":  # the monitor's kept best steps of the full-data jobs (sft_best)
            best = [Variant(p.name, str(p)) for p in sorted(run.models_dir.glob("*_best"))
                    if not p.name.startswith("sub_")]
            if not best:
                log("[skip] eval:best: no models/<job>_best yet (kept by the monitor: "
                    "monitor.enabled with monitor.keep_best)")
            out += best
        elif name == "interpolation":
            out += [Variant(interp_name(t), str(run.model(interp_name(t))))
                    for t in cfg.eval.interpolation]
        else:
            out.append(Variant(name, str(run.model(name))))
    # Every recipe's model is scored too (recipe entries name the model directories).
    recipe_labels = [e.variant for e in cfg.recipes or []]
    out += [Variant(n, str(run.model(n))) for n in recipe_labels if n not in {v.name for v in out}]
    kept = []
    for v in out:
        if v.name == "base" or Path(v.model).exists():
            if producer_job(v.name):  # a killed train/merge must not be scored as finished
                run.require_finished(producer_job(v.name), v.model)
            kept.append(v)
        elif v.name in ("sft", "dtm", *recipe_labels) or v.name.startswith(("sub_", "interp_")):
            log(f"[skip] eval:{v.name}: no model at {v.model} (train/merge it first)")
        else:
            raise ConfigError(
                f"eval.variants: '{v.name}' is neither one of {', '.join(VARIANT_KEYWORDS)} nor a "
                f"model directory under {run.models_dir}"
            )
    return kept


def _model_hash(model: str) -> str:
    return hash_path(Path(model)) if Path(model).exists() else model


def evaluate_stage(cfg: RunConfig, run: RunDir, log=print) -> dict:
    """Score every configured variant, then write the bias analysis (`eval/bias.json`).

    Args:
        cfg: The run config; `cfg.eval` holds the settings shared by all variants.
        run: The run directory.
        log: Progress printer.

    Returns:
        {"variants": [names evaluated or already done], "ran": [names evaluated now]}.
    """
    from dtmerge.evaluate.harness import is_adapter_dir

    if not cfg.eval.tasks and not cfg.eval.judge_url:
        log("[skip] eval: eval.tasks is empty (name lm-eval tasks, a group such as 'paper', "
            "or tasks in eval.include_path) and no judge is set: nothing to score")
        return {"variants": [], "ran": []}
    base = resolve_model_path(cfg.model)
    # The item split chooses among scored items after scoring: not part of what is scored.
    settings = {k: v for k, v in cfg.eval.model_dump(mode="json").items() if k not in SPLIT_KEYS}
    defaults = EvalConfig().model_dump(mode="json")
    record_split(cfg.eval, run.root / "eval")
    wanted = resolve_tasks(cfg.eval.tasks, cfg.eval.include_path)
    ran, names = [], []
    for v in plan_variants(cfg, run, log):
        adapter = v.model if is_adapter_dir(v.model) else None
        hashes = {"model": _model_hash(v.model), "base": _model_hash(base) if adapter else None}

        def fingerprints_for(tasks: list[str], hashes=hashes):
            for s in settings_variants(dict(settings, tasks=tasks), defaults):
                yield hash_obj({"eval": s, **hashes})

        fp = next(fingerprints_for(cfg.eval.tasks))
        out = run.eval_file(v.name)
        previous = run.job(f"eval:{v.name}")  # read now: run_job overwrites it when it starts

        def work(v=v, adapter=adapter, out=out, previous=previous, fps=fingerprints_for):
            log(f"[eval] {v.name}: {v.model}" + (" (LoRA adapter, unmerged)" if adapter else ""))
            reused = {} if cfg.eval.judge_url else reusable_results(out, previous, fps, wanted)
            missing = [t for t in wanted if t not in reused]
            if reused:
                log(f"[eval] {v.name}: reusing {', '.join(reused)} (same model and settings)"
                    + (f"; scoring {', '.join(missing)}" if missing else ""))
            result = _score_variant(cfg, v, adapter, base, out, reused, wanted)
            scores = {t: r["score"] for t, r in result["tasks"].items()}
            log(f"[eval] {v.name}: " + ", ".join(f"{t}={s:.4f}" for t, s in scores.items()
                                                   if s is not None))
            return {"outputs": [str(out)], "scores": scores, "eval_tasks": list(cfg.eval.tasks),
                    "reused": list(reused)}

        if run_job(run, f"eval:{v.name}", fp, work, inputs={"model": v.model}, outputs=[out],
                   log=log):
            ran.append(v.name)
        names.append(v.name)
    from dtmerge.evaluate.bias import bias_stage

    bias_stage(cfg, run, log=log)
    return {"variants": names, "ran": ran}


def _score_variant(cfg: RunConfig, v: Variant, adapter: str | None, base: str, out: Path,
                   reused: dict, wanted: list[str]) -> dict:
    """Score the tasks of `wanted` not in `reused` and write the variant's complete result."""
    from dtmerge.evaluate.harness import evaluate_model

    kwargs = dict(base_model=base if adapter else None, tokenizer=_tokenizer_for(cfg, v, adapter))
    if not reused:
        return evaluate_model(adapter or v.model, cfg.eval, out, v.name, **kwargs)
    missing = [t for t in wanted if t not in reused]
    if missing:
        part = out.with_name(f".{out.stem}.new-tasks.json")
        fresh = evaluate_model(adapter or v.model, cfg.eval, part, v.name, tasks=missing, **kwargs)
        part.unlink(missing_ok=True)
    else:  # tasks were only dropped: keep the file's record with fewer tasks
        fresh = dict(json.loads(out.read_text()), tasks={})
    result = merge_results(out, fresh, reused, wanted)
    atomic_write_json(out, result)
    return result


def _tokenizer_for(cfg: RunConfig, v: Variant, adapter: str | None):
    """Give the base model the same chat template as the trained variants when one is used."""
    if not cfg.eval.apply_chat_template or v.name != "base":
        return None
    from dtmerge.models import load_tokenizer

    return load_tokenizer(cfg.model)
