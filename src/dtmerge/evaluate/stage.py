"""The evaluate stage: every variant of a run scored with identical settings.

Each variant is its own manifest job (`eval:<variant>`) whose fingerprint covers the eval
settings and a hash of the model directory, so a rerun skips finished evaluations and redoes
those whose model or settings changed. Interpolations base + t*(sft - base) are built by the
merge stage (job `interp:<t>`) and evaluated here as `interp_<t>`. When only `eval.tasks` changed, task
results already scored with the same model and settings are reused (see `reuse.py`), so
adding one benchmark scores only that benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dtmerge.config import EvalConfig, RunConfig
from dtmerge.errors import ConfigError, DtmError
from dtmerge.executors import Placement, longest_first, parallel_jobs, run_jobs, threads_per_job
from dtmerge.models import resolve_model_path
from dtmerge.evaluate.groups import resolve_tasks
from dtmerge.evaluate.reuse import merge_results, reusable_results, settings_variants
from dtmerge.evaluate.split import SPLIT_KEYS, record_split
from dtmerge.process_guard import fault_point
from dtmerge.rundir import (OWN_DTM, RunDir, atomic_write_json, hash_file, hash_model, hash_obj,
                            interp_name, producer_job, read_state_json, rerun_hint,
                            sub_model_name)

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
            out += [Variant(sub_model_name(OWN_DTM, k), str(run.sub_model(OWN_DTM, k)))
                    for k in range(cfg.disperse.num_portions)]
        elif name == "best":  # the monitor's kept best steps of the full-data jobs (sft_best)
            found = [p for p in sorted(run.models_dir.glob("*_best"))
                     if not p.name.startswith("sub_")]
            if not found:
                log("[skip] eval:best: no models/<job>_best (the monitor keeps one, with "
                    "monitor.enabled and monitor.keep_best, only when an earlier step does "
                    "better: see the report's monitor section)")
            for p in found:
                same = best_is_final(run, p)
                if same:
                    log(f"[skip] eval:{p.name}: {same}")
                else:
                    out.append(Variant(p.name, str(p)))
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


def best_is_final(run: RunDir, best_dir: Path) -> str | None:
    """Why `models/<job>_best` is not a variant of its own (its best step is the job's last:
    the same weights as `<job>`), or None when it is an earlier step."""
    job = best_dir.name.removesuffix("_best")
    step = read_state_json(best_dir / "best.json", (
        f"delete {best_dir} (the variant {best_dir.name} is then not scored; to get it back, "
        f"delete models/{job} too and rerun `dtm train {run.root}`)"), default={}).get("step")
    final = (run.job(f"train:{job}") or {}).get("steps")
    if step is None or final is None or step != final:
        return None
    return (f"its best probed step is the last ({step} of {final}): the same weights as {job}, "
            "so no earlier checkpoint does better on the monitor's score")


# Keys that decide where an evaluation runs, not what it scores: not in the fingerprint.
PLACEMENT_KEYS = ("executor", "parallel_jobs", "cpus_per_job", "gpus_per_job")


def evaluate_stage(cfg: RunConfig, run: RunDir, log=print) -> dict:
    """Score every configured variant, then write the bias analysis (`eval/bias.json`).

    Each variant not already done is one job; `eval.executor` and `eval.parallel_jobs` place
    the jobs here, in a process pool, or as Ray tasks (the scores do not depend on it).

    Args:
        cfg: The run config; `cfg.eval` holds the settings shared by all variants.
        run: The run directory.
        log: Progress printer.

    Returns:
        {"variants": [names evaluated or already done], "ran": [names evaluated now]}.
    """
    if not cfg.eval.tasks and not cfg.eval.judge_url:
        log("[skip] eval: eval.tasks is empty (name lm-eval tasks, a group such as 'paper', "
            "or tasks in eval.include_path) and no judge is set: nothing to score")
        return {"variants": [], "ran": []}
    names, calls, records = _plan_eval_jobs(cfg, run, log)
    calls, twins = _share_identical(calls, records, log)

    def on_start(name):  # needs_run already said why the job runs
        run.mark_started(f"eval:{name}", records[name]["fp"], {"model": records[name]["variant"].model})

    def on_done(name, scores):
        fault_point(f"finished eval:{name}")
        log(f"[eval] {name}: " + ", ".join(f"{t}={s:.4f}" for t, s in scores.items() if s is not None))
        run.mark_done(f"eval:{name}", outputs=[str(run.eval_file(name))], scores=scores,
                      eval_tasks=list(cfg.eval.tasks), reused=list(records[name]["reused"]))
        for twin in twins.get(name, []):
            _copy_scores(run, name, twin, records[twin], log)

    def on_fail(name, err):
        for job in (name, *twins.get(name, [])):
            run.mark_failed(f"eval:{job}", err)

    where = _placement(cfg, len(calls))
    if where.kind == "pool":  # an ensemble of K models costs K scorings: it starts first
        calls = longest_first(calls, lambda name: scoring_cost(records[name]["variant"].model))
    failures = run_jobs(score_variant_job, calls, where, on_start=on_start, on_done=on_done,
                        on_fail=on_fail)
    if failures:
        raise DtmError("evaluation failed for " + "; ".join(failures)
                       + ". Finished variants are kept; rerun the same command to retry the rest")
    from dtmerge.evaluate.bias import bias_stage

    bias_stage(cfg, run, log=log)
    return {"variants": names, "ran": [name for name, _ in calls]}


def scoring_cost(model: str) -> int:
    """Forward passes per scored token: an ensemble's member count, else one."""
    from dtmerge.models.marker import model_spec

    spec = model_spec(model) or {}
    return max(1, len(spec.get("members") or [])) if spec.get("kind") == "ensemble" else 1


# Files of a model directory that say how it was made, not what it computes.
PROVENANCE_FILES = {"merge_record.json", "README.md"}


def weights_identity(model: str | Path) -> tuple[int, Path, list[Path]]:
    """(total bytes, dir, files) of a local model's content files, for `_share_identical`."""
    root = Path(model)
    files = sorted(f for f in root.rglob("*") if f.is_file() and not f.name.startswith(".")
                   and f.name not in PROVENANCE_FILES) if root.is_dir() else []
    return sum(f.stat().st_size for f in files), root, files


def content_digest(root: Path, files: list[Path]) -> str:
    """Hash of every content file's name and bytes (the fast fingerprint uses mtimes)."""
    return hash_obj([(str(f.relative_to(root)), hash_file(f)) for f in files])


def _share_identical(calls: list, records: dict, log) -> tuple[list, dict]:
    """Score each distinct (weights, base, settings) once.

    Two variants with byte-identical weight files scored with the same settings (wise_ft at
    t = 0.5 and interp_0.5, say) get the same scores: the second copies the first's instead of
    a second evaluation. The fast fingerprint cannot tell (it reads the mtimes of large files
    and each merge records its own timing), so variants of equal settings and equal size are
    compared by content; a variant without equal-sized company is never hashed. Returns the
    calls left to run and, per variant run, the variants that copy it.
    """
    by_size: dict[tuple, list[tuple[str, Path, list[Path]]]] = {}
    for name, _ in calls:
        if not records[name]["reused"]:  # partial reuse: keep it simple, score it itself
            size, root, files = weights_identity(records[name]["variant"].model)
            if files:
                by_size.setdefault((records[name]["settings_fp"], size), []).append(
                    (name, root, files))
    source = {}
    for group in (g for g in by_size.values() if len(g) > 1):
        first_of = {}
        for name, root, files in group:
            first = first_of.setdefault(content_digest(root, files), name)
            if first != name:
                source[name] = first
    kept, twins = [], {}
    for name, args in calls:
        if name in source:
            twins.setdefault(source[name], []).append(name)
            log(f"[eval] {name}: the same weights as {source[name]} (byte-identical files, same "
                f"settings): its scores are copied once {source[name]} is scored")
        else:
            kept.append((name, args))
    return kept, twins


def _copy_scores(run: RunDir, source: str, name: str, record: dict, log) -> None:
    """Write `source`'s result as variant `name` (same weights and settings: same scores)."""
    result = read_state_json(run.eval_file(source), rerun_hint(f"dtm eval {run.root}"))
    result.update(variant=name, model=record["variant"].model, same_model_as=source)
    run.mark_started(f"eval:{name}", record["fp"], {"model": record["variant"].model})
    atomic_write_json(run.eval_file(name), result)
    scores = {t: r.get("score") for t, r in result.get("tasks", {}).items()}
    job = run.job(f"eval:{source}") or {}
    run.mark_done(f"eval:{name}", outputs=[str(run.eval_file(name))], scores=scores,
                  eval_tasks=job.get("eval_tasks"), reused=[], same_model_as=source)
    log(f"[eval] {name}: same model as {source}: scores copied")


def _placement(cfg: RunConfig, jobs: int) -> Placement:
    e = cfg.eval
    if e.executor == "ray":
        return Placement("ray", ray_address=cfg.train.ray_address, ray_options=dict(
            num_cpus=e.cpus_per_job, num_gpus=e.gpus_per_job, max_retries=cfg.train.max_retries),
            threads=threads_per_job(cfg.train.threads_per_job, 1, e.cpus_per_job))
    at_once = e.parallel_jobs
    if at_once == "auto":
        from dtmerge.evaluate.harness import pick_device

        at_once = parallel_jobs("auto", resolve_model_path(cfg.model), jobs,
                                on_cpu=pick_device(e.device) == "cpu")
    return Placement("pool" if at_once > 1 else "local", slots=(None,) * at_once,
                     threads=threads_per_job(cfg.train.threads_per_job,
                                             min(at_once, max(1, jobs))))


def _plan_eval_jobs(cfg: RunConfig, run: RunDir, log) -> tuple[list[str], list, dict]:
    """Every variant's name, and the job (with its reusable task results) of those not done."""
    from dtmerge.evaluate.harness import is_adapter_dir

    base = resolve_model_path(cfg.model)
    # Neither where a job runs nor the item split (it chooses among scored items afterwards)
    # changes what is scored: both stay out of the fingerprint.
    unscored = set(PLACEMENT_KEYS) | set(SPLIT_KEYS)
    settings = cfg.eval.model_dump(mode="json", exclude=unscored)
    defaults = EvalConfig().model_dump(mode="json", exclude=unscored)
    record_split(cfg.eval, run.root / "eval")
    wanted = resolve_tasks(cfg.eval.tasks, cfg.eval.include_path)
    cfg_json = cfg.model_dump(mode="json")
    names, calls, records = [], [], {}
    base_hash = None
    for v in plan_variants(cfg, run, log):
        names.append(v.name)
        adapter = v.model if is_adapter_dir(v.model) else None
        if adapter and base_hash is None:
            base_hash = hash_model(base)  # once per stage: the base is shared by every adapter
        hashes = {"model": hash_model(v.model), "base": base_hash if adapter else None}

        def fingerprints_for(tasks: list[str], hashes=hashes):
            for s in settings_variants(dict(settings, tasks=tasks), defaults):
                yield hash_obj({"eval": s, **hashes})

        fp = next(fingerprints_for(cfg.eval.tasks))
        out = run.eval_file(v.name)
        previous = run.job(f"eval:{v.name}")  # read now: starting the job overwrites it
        if not run.needs_run(f"eval:{v.name}", fp, [out], log):
            continue
        reused = {} if cfg.eval.judge_url else reusable_results(out, previous, fingerprints_for, wanted)
        log(f"[eval] {v.name}: {v.model}" + (" (LoRA adapter, unmerged)" if adapter else ""))
        if reused:
            missing = [t for t in wanted if t not in reused]
            log(f"[eval] {v.name}: reusing {', '.join(reused)} (same model and settings)"
                + (f"; scoring {', '.join(missing)}" if missing else ""))
        calls.append((v.name, (cfg_json, v, adapter, base, str(out), reused, wanted)))
        records[v.name] = {"fp": fp, "previous": previous, "variant": v, "reused": reused,
                           "settings_fp": hash_obj({"eval": settings, "base": hashes["base"]})}
    return names, calls, records


def score_variant_job(cfg_json: dict, v: Variant, adapter: str | None, base: str, out: str,
                      reused: dict, wanted: list[str], device) -> dict:
    """One evaluation job (any executor): score, write the variant's result, return scores."""
    cfg = RunConfig.model_validate(cfg_json)
    result = _score_variant(cfg, v, adapter, base, Path(out), reused, wanted)
    return {t: r["score"] for t, r in result["tasks"].items()}


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
        fresh = dict(read_state_json(out, rerun_hint(f"dtm eval {out.parent.parent}")), tasks={})
    result = merge_results(out, fresh, reused, wanted)
    atomic_write_json(out, result)
    return result


def _tokenizer_for(cfg: RunConfig, v: Variant, adapter: str | None):
    """Give the base model the same chat template as the trained variants when one is used."""
    if not cfg.eval.apply_chat_template or v.name != "base":
        return None
    from dtmerge.models import load_tokenizer

    return load_tokenizer(cfg.model)
