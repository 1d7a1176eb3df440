"""What `dtm run --dry-run` checks and prints: inputs, jobs, tokens, compute and disk.

Everything here works without a network: local models and data are inspected (config.json,
a tokenizer on a sample of the data), Hub ids are looked up in the Hugging Face cache and then
in `dtmerge.dryrun.catalog`, and every number that is an assumption is labelled as one. No
library estimates a DTM run (K sub-models + an SFT baseline + a merge), hence this module.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path

from dtmerge.dryrun import catalog
from dtmerge.dryrun.cost import Arch, add_costs, fmt_gib
from dtmerge.config import RunConfig
from dtmerge.errors import ConfigError
from dtmerge.models.gguf import cached_conversion
from dtmerge.rundir import OWN_DTM, STAGES, sub_model_name
from dtmerge.dryrun.checks import check_inputs
from dtmerge.models.locate import is_gguf, local_config_source, locate_gguf_quietly

__all__ = ["make_plan", "format_plan", "raise_for_problems"]

_SAMPLE = 200  # examples tokenised to estimate the mean length
_GIB = 1 << 30


def make_plan(cfg: RunConfig, throughput: float | None = None) -> dict:
    """Estimate a run without running it.

    Args:
        cfg: the run config.
        throughput: measured trained tokens/s of one job (replaces the assumed FLOP rate).

    Returns:
        A JSON-able dict: stages, K, data (examples, per portion, source of the numbers),
        jobs (name, examples, steps, tokens), tokens (mean per example, total trained, how
        estimated), model (parameters, trainable, source), compute (FLOPs, GPU hours and the
        assumptions behind them, CPU hours here), disk (needed vs free), each job's cost
        (peak memory by part, seconds; see `dtmerge.dryrun.cost`), evaluation (tokens, seconds,
        memory per variant), notes, and problems (strings starting "error:" or "note:"; see
        `check_inputs`; the disk check and the GPU fit check add theirs).
    """
    problems = check_inputs(cfg)
    notes: list[str] = []
    data = _data_estimate(cfg, notes)
    model = _model_estimate(cfg, notes)
    tokens = _token_estimate(cfg, data, notes)
    jobs = _jobs(cfg, data, tokens["mean_per_example"])
    tokens["trained_total"] = sum(j["tokens"] for j in jobs)
    compute = _compute_estimate(cfg, model, tokens["trained_total"])
    disk = _disk_estimate(cfg, model, data)
    problems += disk.pop("problems")
    arch, dropout_width = model.pop("_arch", None), model.pop("_lora_dropout_width", 0)
    if data["per_portion"] == 0:
        problems.append(f"error: {data['train']} training examples cannot fill "
                        f"disperse.num_portions={cfg.disperse.num_portions} portions")
    for job in jobs:
        if 0 < job["steps"] <= cfg.train.warmup_steps:
            notes.append(f"job {job['name']} has {job['steps']} optimizer steps, not more than "
                         f"train.warmup_steps={cfg.train.warmup_steps}: it never leaves warmup")
            break
    extra = _recipe_jobs(cfg) - {j["name"] for j in jobs}
    if extra:  # recipe jobs are not estimated (their data exist only after the train stage)
        notes.append(f"recipes add {len(extra)} training jobs not counted above: "
                     + ", ".join(sorted(extra)))
    plan = {
        "name": cfg.name, "run_dir": str(cfg.run_dir), "stages": list(STAGES),
        "num_portions": cfg.disperse.num_portions, "strategy": cfg.disperse.strategy,
        "method": cfg.train.method, "data": data, "model": model, "tokens": tokens,
        "jobs": jobs, "compute": compute, "disk": disk, "notes": notes, "problems": problems,
    }
    add_costs(plan, cfg, arch, dropout_width, throughput)
    return plan


def raise_for_problems(plan: dict) -> None:
    """Raise ConfigError listing every "error:" problem of a plan (notes are not errors)."""
    errors = [p for p in plan["problems"] if p.startswith("error:")]
    if errors:
        raise ConfigError(f"{len(errors)} problem(s) found before running:\n  - "
                          + "\n  - ".join(e[len("error: "):] for e in errors))


# --------------------------------------------------------------------------- data


def _recipe_jobs(cfg: RunConfig) -> set[str]:
    from dtmerge.recipes import resolve_recipes
    from dtmerge.rundir import RunDir

    if cfg.recipes is None:
        return set()
    run = RunDir(cfg.run_dir)
    return {job.name for recipe in resolve_recipes(cfg) for job in recipe.jobs(run)}


def _data_estimate(cfg: RunConfig, notes: list[str]) -> dict:
    dc, k = cfg.data, cfg.disperse.num_portions
    path = Path(dc.path).expanduser()
    records, source = None, ""
    if path.exists():
        try:
            from dtmerge.data.readers import load_records

            records = load_records(dc)
            source = f"counted in {dc.path}"
        except Exception as err:  # reported by validate_inputs; keep planning
            notes.append(f"data not counted ({err})")
    if records is not None:
        n = len(records)
    elif dc.path in catalog.KNOWN_DATASETS:
        n, _, source = catalog.KNOWN_DATASETS[dc.path]
    elif dc.path.startswith((".", "/", "~")) or path.suffix:
        n, source = None, "unknown (data file not found)"
    else:
        n, source = None, "unknown (Hub data set not in the built-in table and not local)"
    if n is not None and dc.max_examples:
        n = min(n, dc.max_examples)
    train = None if n is None else n - int(round(n * dc.eval_fraction))
    return {"examples": n, "train": train, "per_portion": None if train is None else train // k,
            "source": source, "_records": records}


def _normalised_sample(cfg: RunConfig, records: list[dict]) -> list[dict]:
    from dtmerge.data.formats import detect_format, normalise

    rng = random.Random(cfg.data.seed)
    sample = rng.sample(records, min(_SAMPLE, len(records)))
    fmt = cfg.data.format if cfg.data.format != "auto" else detect_format(sample[0])
    out = [normalise(r, fmt, cfg.data.first_turn_only) for r in sample]
    return [r for r in out if r]


def _token_estimate(cfg: RunConfig, data: dict, notes: list[str]) -> dict:
    records = data.pop("_records")
    max_len = cfg.train.max_length
    if records:
        tok = _plan_tokenizer(cfg)
        if tok is not None:
            try:
                sample = _normalised_sample(cfg, records)
                lengths = [min(max_len, len(tok.apply_chat_template(
                    r["prompt"] + r["completion"], tokenize=True, return_dict=False)))
                    for r in sample]
                return {"mean_per_example": round(sum(lengths) / len(lengths), 1),
                        "max_per_example": max(lengths),
                        "padding_factor": _padding_factor(lengths, cfg.train.batch_size),
                        "how": f"tokenised {len(lengths)} sampled examples with the model's "
                               f"tokenizer and chat template (capped at {max_len})"}
            except Exception as err:
                notes.append(f"could not tokenise a data sample ({type(err).__name__}: {err})")
        else:
            return _length_from_characters(cfg, records)
    if cfg.data.path in catalog.KNOWN_DATASETS:
        mean = catalog.KNOWN_DATASETS[cfg.data.path][1]
        how = f"assumed {mean} tokens/example for {cfg.data.path} (built-in table, not measured)"
    else:
        mean = catalog.DEFAULT_TOKENS_PER_EXAMPLE
        how = f"assumed the default {mean} tokens/example (data or tokenizer not available here)"
    return {"mean_per_example": float(min(mean, max_len)), "how": how}


def _length_from_characters(cfg: RunConfig, records: list[dict]) -> dict:
    """Token lengths of local data when the tokenizer is not here: 4 characters per token plus
    a prompt template's ~30 tokens (an assumption, said so)."""
    max_len = cfg.train.max_length
    lengths = [min(max_len, 30 + sum(len(str(m.get("content", ""))) for m in
                                     r["prompt"] + r["completion"]) // 4)
               for r in _normalised_sample(cfg, records)]
    return {"mean_per_example": round(sum(lengths) / len(lengths), 1),
            "max_per_example": max(lengths),
            "padding_factor": _padding_factor(lengths, cfg.train.batch_size),
            "how": f"estimated from the characters of {len(lengths)} sampled examples (4 per "
                   f"token, +30 for the template; the tokenizer is not available here)"}


def _padding_factor(lengths: list[int], batch: int) -> float:
    """Tokens computed over tokens trained when random batches are padded to their longest."""
    order = random.Random(0).sample(lengths, len(lengths))
    batches = [order[i:i + batch] for i in range(0, len(order), batch)]
    return round(sum(len(b) * max(b) for b in batches) / sum(order), 2)


def _plan_tokenizer(cfg: RunConfig):
    """The run's tokenizer without converting a GGUF (a dry run must stay cheap)."""
    from transformers import AutoTokenizer

    from dtmerge.models import ALPACA_CHAT_TEMPLATE

    mc = cfg.model
    try:
        if mc.tokenizer:
            tok = AutoTokenizer.from_pretrained(mc.tokenizer)
        elif is_gguf(mc):
            file = locate_gguf_quietly(mc)
            if file is None:
                return None
            converted = cached_conversion(file)
            # Rebuilding a tokenizer from GGUF metadata takes ~30 s for a 262k vocabulary;
            # the converted directory, when it exists, loads in about a second.
            tok = AutoTokenizer.from_pretrained(str(converted)) if converted else \
                AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
        else:
            src = local_config_source(mc)
            if src is None:
                return None
            tok = AutoTokenizer.from_pretrained(src)
    except Exception:
        return None
    if mc.chat_template == "alpaca" or not tok.chat_template:
        tok.chat_template = ALPACA_CHAT_TEMPLATE
    return tok


# --------------------------------------------------------------------------- model


def _model_config(cfg: RunConfig, notes: list[str]):
    from transformers import AutoConfig

    mc = cfg.model
    try:
        if is_gguf(mc):
            file = locate_gguf_quietly(mc)
            converted = cached_conversion(file) if file is not None else None
            if converted is not None:
                return AutoConfig.from_pretrained(str(converted)), f"converted {file.name}"
            if file is not None:
                return AutoConfig.from_pretrained(str(file.parent), gguf_file=file.name), \
                    f"GGUF metadata of {file.name}"
        else:
            src = local_config_source(mc)
            if src is not None:
                return AutoConfig.from_pretrained(src, trust_remote_code=mc.trust_remote_code), \
                    f"config.json of {src}"
    except Exception as err:
        notes.append(f"model config not readable ({type(err).__name__}: {err})")
    if mc.path in catalog.KNOWN_MODELS:
        fields = dict(catalog.KNOWN_MODELS[mc.path])
        return AutoConfig.for_model(fields.pop("model_type"), **fields), \
            f"built-in table entry for {mc.path} (offline)"
    return None, "unknown (not local, not cached, not in the built-in table)"


def _model_estimate(cfg: RunConfig, notes: list[str]) -> dict:
    config, source = _model_config(cfg, notes)
    out = {"parameters": None, "trainable": None, "source": source, "architecture": None}
    if config is None:
        return out
    import torch
    from transformers import AutoModelForCausalLM

    # Built on the meta device: exact shapes, no memory, a second or two even for 7B.
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    out["architecture"] = getattr(config, "model_type", None)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for name, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head"))
    out["_arch"] = Arch.from_config(config, out["parameters"], linear)
    if cfg.train.method == "full":
        out["trainable"] = out["parameters"]
    else:
        out["trainable"], widths = _lora_parameters(model, cfg, notes)
        out["_lora_dropout_width"] = widths // max(1, out["_arch"].layers)
    return out


def _lora_parameters(model, cfg: RunConfig, notes: list[str]) -> tuple[int | None, int]:
    """LoRA's trainable parameters, r x (d_in + d_out) per adapted matrix, and the summed
    input widths of the adapted matrices (each keeps a dropped-out copy of its input)."""
    import torch

    spec = cfg.train.lora.target_modules
    try:
        from dtmerge.train.targets import resolve_target_modules

        targets = resolve_target_modules(model, spec)
    except Exception as err:
        notes.append(f"LoRA targets not resolved ({err})")
        return None, 0
    r, total, widths = cfg.train.lora.r, 0, 0
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear) and leaf != "lm_head" and (
                targets == "all-linear" or leaf in targets):
            total += r * (module.in_features + module.out_features)
            widths += module.in_features
    return total, widths


# --------------------------------------------------------------------------- jobs and compute


def _jobs(cfg: RunConfig, data: dict, mean_tokens: float) -> list[dict]:
    tc, k = cfg.train, cfg.disperse.num_portions
    effective_batch = tc.batch_size * tc.grad_accum  # each job runs on one device
    specs = [(sub_model_name(OWN_DTM, i), data["per_portion"]) for i in range(k)]
    if tc.sft_baseline:
        specs.append(("sft", data["train"]))
    jobs = []
    for name, examples in specs:
        if tc.max_steps > 0:
            steps = tc.max_steps
            seen = steps * effective_batch
        elif examples is None:
            steps, seen = 0, 0
        else:
            steps = math.ceil(math.ceil(examples / effective_batch) * tc.num_epochs)
            seen = examples * tc.num_epochs
        jobs.append({"name": name, "examples": examples, "steps": steps,
                     "tokens": int(seen * mean_tokens)})
    return jobs


def _compute_estimate(cfg: RunConfig, model: dict, tokens: int) -> dict:
    n = model["parameters"]
    # Full fine-tuning: forward 2N + backward 4N FLOPs per token. LoRA skips the weight
    # gradients of the frozen matrices (about a third of the work): ~4N.
    per_token = 6 if cfg.train.method == "full" else 4
    out = {"flops_per_token": f"{per_token}*N", "assumptions":
           f"{catalog.GPU_NAME} at {catalog.GPU_PEAK_TFLOPS:g} TFLOP/s peak, "
           f"{catalog.ASSUMED_MFU:.0%} utilisation; trained tokens only: the time estimate "
           "above adds padding, attention and per-step costs"}
    if not n or not tokens:
        out.update(flops=None, gpu_hours=None, cpu_hours_here=None)
        return out
    flops = per_token * n * tokens
    gpu_rate = catalog.GPU_PEAK_TFLOPS * 1e12 * catalog.ASSUMED_MFU
    cores = os.cpu_count() or 1
    out.update(flops=flops, gpu_hours=float(f"{flops / gpu_rate / 3600:.3g}"),
               cpu_hours_here=float(f"{flops / (catalog.CPU_TFLOPS_PER_CORE * 1e12 * cores) / 3600:.3g}"),
               cpu_assumption=f"{catalog.CPU_TFLOPS_PER_CORE:g} TFLOP/s per core x {cores} cores "
                              "(fp32, measured on an idle 2-core machine; a busy one is several times slower)")
    return out


def _bytes_per_param(cfg: RunConfig) -> int:
    from dtmerge.models import pick_dtype

    return pick_dtype(cfg.model.dtype).itemsize


def _disk_estimate(cfg: RunConfig, model: dict, data: dict) -> dict:
    n, trainable = model["parameters"] or 0, model["trainable"] or 0
    k, width = cfg.disperse.num_portions, _bytes_per_param(cfg)
    jobs = k + (1 if cfg.train.sft_baseline else 0)
    full_model = n * width
    if cfg.train.method == "full":
        # Each job keeps its model plus, while running, one checkpoint with Adam's two moments.
        # "auto" runs one job at a time for every model whose disk use matters (over 256 MB)
        at_once = 1 if cfg.train.parallel_jobs == "auto" else cfg.train.parallel_jobs
        trained = jobs * full_model + (full_model + 8 * n) * at_once
    else:
        trained = jobs * trainable * 4 * 2  # adapter + one checkpoint (fp32 with optimizer)
    merged = full_model  # models/dtm is a full model directory
    interp = len(cfg.eval.interpolation) * full_model if "interpolation" in cfg.eval.variants else 0
    data_bytes = 0
    path = Path(cfg.data.path).expanduser()
    if path.is_file():
        data_bytes = 3 * path.stat().st_size  # all + portions + heldout, JSONL
    needed = trained + merged + interp + data_bytes
    where = _existing_parent(Path(cfg.runs_dir).expanduser().resolve())
    free = shutil.disk_usage(where).free
    problems = []
    if needed > free:
        problems.append(f"error: the run needs about {needed / _GIB:.1f} GiB under "
                        f"{cfg.runs_dir} but only {free / _GIB:.1f} GiB are free on {where}; "
                        "free space or set runs_dir to a larger disk")
    return {"needed_bytes": needed, "free_bytes": free, "filesystem": str(where),
            "breakdown_gib": {"trained models": round(trained / _GIB, 2),
                              "merged model": round(merged / _GIB, 2),
                              "interpolated models": round(interp / _GIB, 2),
                              "data": round(data_bytes / _GIB, 3)},
            "problems": problems}


def _existing_parent(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


# --------------------------------------------------------------------------- text


def _fmt_count(x) -> str:
    if x is None:
        return "unknown"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:.2f}{unit}"
    return str(x)


def _fmt_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def _memory_line(memory: dict) -> str:
    parts = ", ".join(f"{k} {v / _GIB:.2f}" for k, v in memory["parts"].items())
    return f"~{fmt_gib(memory['total_bytes'])} ({memory['where']}: {parts} GiB)"


def _cost_lines(plan: dict) -> list[str]:
    cost, ev = plan.get("cost") or {}, plan.get("evaluation")
    if not plan["jobs"] or "cost" not in plan["jobs"][0]:
        return [f"  cost: {cost.get('note', 'unknown')}"] if cost else []
    job = plan["jobs"][0]["cost"]
    longest = "the longest sampled example" if plan["tokens"].get("max_per_example") \
        else "train.max_length"
    lines = [f"  memory per training job at batch {job['memory']['batch']} x "
             f"{job['memory']['length']} tokens ({longest}): " + _memory_line(job["memory"])]
    if job["memory_gpu"]:
        lines.append(f"    on a GPU: {_memory_line(job['memory_gpu'])}")
    lines.append(f"  training time: ~{_fmt_seconds(cost['train_seconds'])} for the jobs above "
                 f"({cost['rate']}; padding x{cost['padding_factor']}"
                 + (f", {cost['step_seconds']} s per optimizer step" if cost["step_seconds"] else "")
                 + "; the knowledge monitor's probes not counted)")
    if cost.get("train_seconds_gpu") is not None:
        lines.append(f"    on a GPU: ~{_fmt_seconds(cost['train_seconds_gpu'])}, one job at a "
                     f"time ({cost['gpu_rate']})")
    if ev:
        tasks = ", ".join(f"{n} {v['items']} items x{1 + v['fewshot']}"
                          for n, v in ev["tasks"].items())
        unknown = f"; not counted: {', '.join(ev['unknown_tasks'])}" if ev["unknown_tasks"] else ""
        lines.append(f"  evaluation: {ev['variants']} variants x {_fmt_count(ev['tokens_per_variant'])}"
                     f" tokens ({tasks}{unknown}) = ~{_fmt_seconds(ev['seconds'])}, "
                     f"~{_fmt_seconds(ev['seconds_per_variant'])} and "
                     f"{_memory_line(ev['memory'])} per variant"
                     + (f"; on a GPU ~{_fmt_seconds(ev['seconds_gpu'])}"
                        if ev.get("seconds_gpu") is not None else ""))
        lines.append(f"    ({ev['how']})")
    return lines


def format_plan(plan: dict) -> str:
    """The plan as the text `dtm run --dry-run` prints."""
    d, m, t, c, disk = plan["data"], plan["model"], plan["tokens"], plan["compute"], plan["disk"]
    lines = [f"Plan for run '{plan['name']}' -> {plan['run_dir']}",
             f"  stages: {' -> '.join(plan['stages'])}",
             f"  K = {plan['num_portions']} portions ({plan['strategy']} split), "
             f"{plan['method']} training",
             f"  data: {_fmt_count(d['examples'])} examples, {_fmt_count(d['train'])} for "
             f"training, {_fmt_count(d['per_portion'])} per portion ({d['source']})",
             f"  model: {_fmt_count(m['parameters'])} parameters ({m['architecture']}), "
             f"{_fmt_count(m['trainable'])} trained per job; from {m['source']}",
             f"  tokens: {t['mean_per_example']} per example ({t['how']})",
             "  jobs:"]
    for j in plan["jobs"]:
        cost = j.get("cost")
        spent = f" ~{_fmt_seconds(cost['seconds'])}, peak ~{fmt_gib(cost['memory']['total_bytes'])}" \
            if cost else ""
        lines.append(f"    {j['name']:<8} {_fmt_count(j['examples']):>8} examples "
                     f"{j['steps']:>7} steps {_fmt_count(j['tokens']):>9} tokens{spent}")
    lines.append(f"  tokens trained in total: {_fmt_count(t['trained_total'])}")
    lines += _cost_lines(plan)
    if c.get("flops"):
        lines.append(f"  compute: {c['flops']:.2e} FLOPs ({c['flops_per_token']} per token) = "
                     f"~{c['gpu_hours']} GPU-hours ({c['assumptions']}); "
                     f"~{c['cpu_hours_here']} h on this machine's CPU ({c['cpu_assumption']})")
    else:
        lines.append("  compute: unknown (model size or token count unknown)")
    lines.append(f"  disk: ~{disk['needed_bytes'] / _GIB:.1f} GiB needed, "
                 f"{disk['free_bytes'] / _GIB:.1f} GiB free on {disk['filesystem']} "
                 f"({', '.join(f'{k} {v}' for k, v in disk['breakdown_gib'].items())} GiB)")
    for note in plan["notes"]:
        lines.append(f"  note: {note}")
    for problem in plan["problems"]:
        lines.append(f"  {problem}")
    n_err = sum(p.startswith("error:") for p in plan["problems"])
    lines.append(f"  => {'ready to run' if not n_err else f'{n_err} error(s): fix them before running'}")
    return "\n".join(lines)


def plan_json(plan: dict) -> str:
    return json.dumps(plan, indent=2, default=str)
