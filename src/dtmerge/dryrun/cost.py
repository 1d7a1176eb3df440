"""Memory and time of one training job and of the evaluation, before running them.

Memory follows the convention accelerate's `estimate-memory` made familiar: weights by dtype
(4-bit NF4 for the linear layers under `model.load_in_4bit`), then for training the trainable
parameters' gradients and Adam's two moments in the trainable parameters' dtype (LoRA
adapters are fp32: PEFT upcasts them), activations at the configured batch and the longest
sampled example, the logits, and a fixed framework overhead. Time is FLOPs (6N or 4N per
trained token plus attention, 2N per evaluated token) over a throughput, plus a fixed cost
per optimizer step. Every constant below is stated and printed with the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

_GIB = 1 << 30

# Activation tensors one decoder layer keeps for the backward pass, per token, in units of
# the hidden size h, the attention width (heads x head_dim) and the MLP width i: the layer
# input and its normalised copy before attention and before the MLP (4h), q, k, v, rotated q
# and k and the attention output (6 attention widths; SDPA keeps no length x length scores),
# and the MLP's gate, up, activated gate and product (4i).
ACT_PER_H, ACT_PER_ATTN, ACT_PER_I = 4, 6, 4
# Logits: the model's output in its dtype, then the loss's fp32 copy, log-softmax and its
# gradient (3 fp32 copies of batch x length x vocab).
LOGIT_FP32_COPIES = 3
# NF4: 4 bits per weight plus a block scale per 64 weights (fp32, double-quantised to ~8 bits).
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 * 1.0
# Resident memory of a training process before the model: Python, torch, transformers, PEFT,
# TRL, datasets and dtmerge imported and a Trainer built (measured on the 2-core CPU VM: the
# demo's 0.77M-parameter job peaks at this; see BENCHMARKS.md "Dry-run estimate").
CPU_OVERHEAD_BYTES = int(0.62 * _GIB)
# On a GPU: the CUDA context and cuBLAS workspaces (not counted by torch's allocator).
GPU_OVERHEAD_BYTES = int(0.5 * _GIB)
# Fixed seconds per optimizer step on this CPU (data collation, optimizer, logging, the
# callbacks), measured from the demo's jobs; on a GPU it is small against the FLOPs.
CPU_STEP_SECONDS = 0.25
GPU_STEP_SECONDS = 0.05


@dataclass(frozen=True)
class Arch:
    """The shapes the estimate needs, read from a transformers config."""

    parameters: int
    linear_parameters: int  # in nn.Linear layers other than lm_head (what 4-bit quantises)
    hidden: int
    intermediate: int
    layers: int
    attention_width: int  # heads x head_dim
    vocab: int

    @classmethod
    def from_config(cls, config, parameters: int, linear_parameters: int) -> "Arch":
        cfg = getattr(config, "text_config", None) or config
        hidden = cfg.hidden_size
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or hidden // heads
        return cls(parameters=parameters, linear_parameters=linear_parameters, hidden=hidden,
                   intermediate=getattr(cfg, "intermediate_size", None) or 4 * hidden,
                   layers=cfg.num_hidden_layers, attention_width=heads * head_dim,
                   vocab=cfg.vocab_size)


def dtype_bytes(dtype: str, on_gpu: bool) -> int:
    """Bytes per weight of `model.dtype` (auto: bf16/fp16 on a GPU, fp32 on a CPU)."""
    if dtype == "auto":
        return 2 if on_gpu else 4
    return 4 if dtype == "float32" else 2


def weight_bytes(arch: Arch, width: int, four_bit: bool) -> float:
    if four_bit:
        return arch.linear_parameters * NF4_BYTES_PER_PARAM + \
            (arch.parameters - arch.linear_parameters) * width
    return arch.parameters * width


def activation_bytes(arch: Arch, batch: int, length: int, width: int, checkpointing: bool,
                     lora_dropout_width: int = 0) -> float:
    """Activations kept for the backward pass, logits excluded.

    With gradient checkpointing each layer keeps only its input, and one layer's activations
    exist at a time while it is recomputed. `lora_dropout_width`: the summed input widths of
    the LoRA-adapted matrices of one layer when LoRA dropout is on (each keeps a dropped copy).
    """
    per_layer = width * (ACT_PER_H * arch.hidden + ACT_PER_ATTN * arch.attention_width
                         + ACT_PER_I * arch.intermediate + lora_dropout_width)
    tokens = batch * length
    if checkpointing:
        return tokens * (arch.layers * width * arch.hidden + per_layer)
    return tokens * arch.layers * per_layer


def logits_bytes(arch: Arch, batch: int, length: int, width: int) -> float:
    return batch * length * arch.vocab * (width + 4 * LOGIT_FP32_COPIES)


def training_memory(arch: Arch, trainable: int, *, lora: bool, batch: int, length: int,
                    dtype: str, on_gpu: bool, four_bit: bool, checkpointing: bool,
                    lora_dropout_width: int = 0) -> dict:
    """Peak memory of one training job, by part (bytes) and in total."""
    width = dtype_bytes(dtype, on_gpu)
    trainable_width = 4 if lora else width  # PEFT keeps adapters in fp32
    parts = {
        "weights": weight_bytes(arch, width, four_bit),
        "gradients": trainable * trainable_width,
        "optimizer": 2 * trainable * trainable_width,  # Adam's two moments
        "activations": activation_bytes(arch, batch, length, width, checkpointing,
                                        lora_dropout_width),
        "logits": logits_bytes(arch, batch, length, width),
        "overhead": GPU_OVERHEAD_BYTES if on_gpu else CPU_OVERHEAD_BYTES,
    }
    if lora:
        parts["weights"] += trainable * 4  # the adapters themselves
    return {"parts": {k: int(v) for k, v in parts.items()}, "total_bytes": int(sum(parts.values())),
            "where": f"{'GPU' if on_gpu else 'CPU'}, {_dtype_name(width, four_bit)}",
            "length": length, "batch": batch}


def inference_memory(arch: Arch, *, batch: int, length: int, dtype: str, on_gpu: bool,
                     four_bit: bool, logits_cap: int) -> dict:
    """Peak memory of scoring one variant: weights, one batch's logits (lm-eval keeps the
    log-softmax too, at most `logits_cap` bytes for rolling tasks) and the overhead."""
    width = dtype_bytes(dtype, on_gpu)
    parts = {"weights": weight_bytes(arch, width, four_bit),
             "logits": min(batch * length * arch.vocab * 2 * 4, logits_cap),
             "overhead": GPU_OVERHEAD_BYTES if on_gpu else CPU_OVERHEAD_BYTES}
    return {"parts": {k: int(v) for k, v in parts.items()}, "total_bytes": int(sum(parts.values())),
            "where": f"{'GPU' if on_gpu else 'CPU'}, {_dtype_name(width, four_bit)}"}


def training_flops(arch: Arch, tokens: float, length: int, full: bool) -> float:
    """6N per token for full fine-tuning, 4N for LoRA (no weight gradients of the frozen
    matrices), plus attention's 12 x layers x length x width (forward and backward)."""
    per_token = (6 if full else 4) * arch.parameters + \
        12 * arch.layers * length * arch.attention_width
    return tokens * per_token


def forward_flops(arch: Arch, tokens: float) -> float:
    return 2 * arch.parameters * tokens


def seconds(flops: float, flops_per_second: float, steps: int = 0, step_seconds: float = 0.0) -> float:
    return flops / flops_per_second + steps * step_seconds


def _dtype_name(width: int, four_bit: bool) -> str:
    name = {4: "fp32", 2: "bf16/fp16"}[width]
    return f"4-bit NF4 linear layers, rest {name}" if four_bit else name


def fmt_gib(n: float | None) -> str:
    return "unknown" if n is None else f"{n / _GIB:.2f} GiB"


# --------------------------------------------------------------------------- evaluation items

_CHARS_PER_TOKEN = 4  # English text; the assumption is printed with the estimate


def local_task_size(include_path: list[str], task: str) -> tuple[int, float, int] | None:
    """(items, forward tokens per item, default few-shot) of a task in a local directory:
    rows of its data file, the characters of the fields its templates use / 4 (one request
    per choice for multiple choice) plus max_gen_toks for generation. None when the task or
    its file is not found here."""
    import json
    from pathlib import Path

    import yaml

    for root in include_path:
        for spec in Path(root).expanduser().rglob("*.yaml"):
            try:  # lm-eval's `!function` tags are read as plain text
                doc = yaml.load(spec.read_text(), Loader=_TaskLoader) or {}
            except (OSError, yaml.YAMLError):
                continue
            if not isinstance(doc, dict) or doc.get("task") != task:
                continue
            files = ((doc.get("dataset_kwargs") or {}).get("data_files") or {})
            path = files.get(doc.get("test_split", "test")) if isinstance(files, dict) else None
            if not path or not Path(path).is_file():
                return None
            rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
            if not rows:
                return None
            chars = sum(_request_chars(r, doc) for r in rows)
            generated = int((doc.get("generation_kwargs") or {}).get("max_gen_toks", 0)) \
                if doc.get("output_type") == "generate_until" else 0
            return len(rows), chars / _CHARS_PER_TOKEN / len(rows) + generated, \
                int(doc.get("num_fewshot") or 0)
    return None


def _task_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, tag, node: None)
    return Loader


_TaskLoader = _task_loader()


def _template_fields(template, row: dict) -> list[str]:
    """Row fields a task's doc_to_* template uses: `{{name}}` references or a bare key."""
    import re

    if not isinstance(template, str):
        return []
    if template in row:
        return [template]
    return [f for f in re.findall(r"{{\s*(\w+)", template) if f in row]


def _request_chars(row: dict, doc: dict) -> float:
    """Characters lm-eval sends for one item: the fields the task's templates use (the whole
    row when none is found), with the context once per choice for multiple choice."""
    import json

    text_fields = _template_fields(doc.get("doc_to_text"), row)
    choice_fields = _template_fields(doc.get("doc_to_choice"), row)
    if doc.get("output_type") != "multiple_choice":
        text_fields += _template_fields(doc.get("doc_to_target"), row)
    if not text_fields and not choice_fields:
        return len(json.dumps(row, ensure_ascii=False))
    context = sum(len(str(row[f])) for f in dict.fromkeys(text_fields))
    choices = row[choice_fields[0]] if choice_fields else None
    if not isinstance(choices, list) or not choices:
        return context
    return sum(context + len(str(c)) for c in choices)


def evaluation_tokens(tasks: list[str], include_path: list[str], shots, limit,
                      known: dict[str, tuple[int, int, int]]) -> dict:
    """Forward tokens of scoring one variant on `tasks`: items x (1 + few-shot) x tokens per
    item, per task; a task neither local nor in `known` is listed as unknown."""
    per_task, unknown = {}, []
    for task in tasks:
        size = local_task_size(include_path, task) if include_path else None
        if size is None and task in known:
            size = known[task]
        if size is None:
            unknown.append(task)
            continue
        items, per_item, default_shots = size
        if isinstance(limit, int):
            items = min(items, limit)
        elif isinstance(limit, float):
            items = int(items * limit)
        k = shots.get(task) if isinstance(shots, dict) else shots
        k = default_shots if k is None else k
        per_task[task] = {"items": items, "fewshot": k,
                          "tokens": int(items * per_item * (1 + k))}
    return {"tasks": per_task, "unknown": unknown,
            "tokens": sum(t["tokens"] for t in per_task.values())}


def variant_count(variants: list[str], num_portions: int, interpolation: list[float]) -> int:
    sizes = {"submodels": num_portions, "interpolation": len(interpolation)}
    return sum(sizes.get(v, 1) for v in variants)


# --------------------------------------------------------------------------- the plan's costs


def visible_gpus() -> list[dict]:
    """Each visible CUDA device: index, name, free and total bytes (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        out.append({"index": i, "name": torch.cuda.get_device_name(i), "free": free,
                    "total": total})
    return out


def gpu_rate(name: str | None) -> tuple[float, str]:
    """FLOP/s assumed for one training job on GPU `name` (the catalog's default without one)."""
    from dtmerge.dryrun import catalog

    kind = next((k for k in catalog.GPU_KINDS if name and k in name), None)
    peak = catalog.GPU_KINDS[kind][0] if kind else catalog.GPU_PEAK_TFLOPS
    label = kind or catalog.GPU_NAME
    return peak * 1e12 * catalog.ASSUMED_MFU, \
        f"{label} at {peak:g} TFLOP/s peak x {catalog.ASSUMED_MFU:.0%} utilisation"


def add_costs(plan: dict, cfg, arch: Arch | None, lora_dropout_width: int,
              throughput: float | None = None, gpus: list[dict] | None = None) -> None:
    """Add memory and seconds to each of `plan`'s jobs, an `evaluation` estimate and
    `cost` (assumptions, where the jobs run); a job that cannot fit the visible GPUs adds a
    note to `plan["problems"]`.

    Args:
        throughput: measured trained tokens/s of one job, replacing the FLOP-rate assumption.
        gpus: the visible GPUs (default: asked of torch); a test passes its own.
    """
    from dtmerge.dryrun import catalog
    from dtmerge.executors import parallel_jobs, usable_cores

    gpus = visible_gpus() if gpus is None else gpus
    on_gpu = bool(gpus)
    tc, mc, t = cfg.train, cfg.model, plan["tokens"]
    length = int(t.get("max_per_example") or tc.max_length)
    cost = {"on": "GPU" if on_gpu else "CPU", "length": length}
    plan["cost"], plan["evaluation"] = cost, None
    if arch is None or plan["model"]["trainable"] is None:
        cost["note"] = "memory and time unknown (model architecture unknown)"
        return
    lora, trainable = tc.method != "full", plan["model"]["trainable"]
    common = dict(lora=lora, batch=tc.batch_size, length=length, dtype=mc.dtype,
                  four_bit=mc.load_in_4bit, checkpointing=mc.gradient_checkpointing,
                  lora_dropout_width=lora_dropout_width if lora and tc.lora.dropout else 0)
    memory = training_memory(arch, trainable, on_gpu=on_gpu, **common)
    # Without a GPU here, also what a GPU would need (the configs for GPUs are checked on CPUs).
    memory_gpu = None if on_gpu else training_memory(arch, trainable, on_gpu=True, **common)
    if on_gpu:
        rate, rate_how = gpu_rate(gpus[0]["name"])
        step_s, at_once = GPU_STEP_SECONDS, 1
    else:
        at_once = parallel_jobs(tc.parallel_jobs, mc.path, len(plan["jobs"]), on_cpu=True)
        threads = tc.threads_per_job or max(1, usable_cores() // at_once)
        rate = catalog.CPU_TFLOPS_PER_CORE * 1e12 * threads
        rate_how = (f"{catalog.CPU_TFLOPS_PER_CORE:g} TFLOP/s per core x {threads} thread(s) "
                    f"per job, {at_once} job(s) at once (measured on an idle 2-core machine)")
        step_s = CPU_STEP_SECONDS
    padding = float(t.get("padding_factor") or 1.0)
    gpu_rate_default, gpu_how = gpu_rate(None)

    def job_seconds(job, rate, step_seconds):
        padded = job["tokens"] * padding
        if throughput:
            return round(padded / throughput, 1)
        return round(seconds(training_flops(arch, padded, length, full=not lora), rate,
                             job["steps"], step_seconds), 1)

    for job in plan["jobs"]:
        job["cost"] = {"memory": memory, "memory_gpu": memory_gpu,
                       "seconds": job_seconds(job, rate, step_s),
                       "seconds_gpu": None if on_gpu or throughput else
                       job_seconds(job, gpu_rate_default, GPU_STEP_SECONDS)}
    cost.update(rate=rate_how if not throughput else f"{throughput:g} trained tokens/s (given)",
                padding_factor=padding, step_seconds=None if throughput else step_s, jobs_at_once=at_once,
                train_seconds=round(sum(j["cost"]["seconds"] for j in plan["jobs"]) / at_once, 1))
    if not on_gpu and not throughput:
        cost.update(gpu_rate=gpu_how, train_seconds_gpu=round(
            sum(j["cost"]["seconds_gpu"] for j in plan["jobs"]), 1))
    plan["evaluation"] = _evaluation(cfg, arch, rate, on_gpu, throughput, lora)
    if not on_gpu and not throughput:
        plan["evaluation"]["seconds_gpu"] = round(
            forward_flops(arch, plan["evaluation"]["tokens_per_variant"])
            * plan["evaluation"]["variants"] / gpu_rate_default, 1)
    for gpu_problem in _fit_problems(memory, gpus, cfg):
        plan["problems"].append(gpu_problem)


def _evaluation(cfg, arch: Arch, train_rate: float, on_gpu: bool, throughput, lora) -> dict:
    from dtmerge.dryrun import catalog
    from dtmerge.evaluate.groups import TASK_GROUPS
    from dtmerge.evaluate.harness import LOGITS_BUDGET_BYTES

    ec = cfg.eval
    tasks = [t for name in ec.tasks for t in TASK_GROUPS.get(name, [name])]
    shots = ec.num_fewshot
    if isinstance(shots, dict):  # a group's entry applies to its tasks, a task's own wins
        shots = {t: shots.get(t, next((shots[g] for g in ec.tasks if g in shots and
                                       t in TASK_GROUPS.get(g, [])), None)) for t in tasks}
    tokens = evaluation_tokens(tasks, list(ec.include_path), shots, ec.limit, catalog.KNOWN_TASKS)
    variants = variant_count(ec.variants, cfg.disperse.num_portions, ec.interpolation)
    per_variant = forward_flops(arch, tokens["tokens"])
    if throughput:  # a training rate: a forward pass is 1/3 (full) or 1/2 (LoRA) of a step
        secs = tokens["tokens"] / (throughput * (3 if not lora else 2))
    else:
        secs = per_variant / train_rate
    batch = ec.batch_size if isinstance(ec.batch_size, int) else 1
    memory = inference_memory(arch, batch=batch, length=cfg.train.max_length, dtype=cfg.model.dtype,
                              on_gpu=on_gpu, four_bit=False, logits_cap=LOGITS_BUDGET_BYTES)
    return {"variants": variants, "tasks": tokens["tasks"], "unknown_tasks": tokens["unknown"],
            "tokens_per_variant": tokens["tokens"], "seconds_per_variant": round(secs, 1),
            "seconds": round(secs * variants, 1), "memory": memory,
            "how": f"items x (1 + few-shot) x tokens per item, 2N FLOPs per token; local tasks: "
                   f"their rows, {_CHARS_PER_TOKEN} characters per token and one request per "
                   "choice; Hub tasks: the built-in table (assumed tokens per item); generation "
                   "is memory-bound and slower than this"}


def _fit_problems(memory: dict, gpus: list[dict], cfg) -> list[str]:
    """Notes for a training job that will not fit the GPU memory free on its device."""
    if not gpus:
        return []
    devices = cfg.train.devices
    chosen = [g for g in gpus if devices is None or str(g["index"]) in
              {d.removeprefix("cuda:") for d in devices}] or gpus
    best = max(chosen, key=lambda g: g["free"])
    need = memory["total_bytes"]
    if need <= best["free"]:
        return []
    return [f"note: a training job needs about {fmt_gib(need)} ({memory['where']}) but GPU "
            f"{best['index']} ({best['name']}) has {fmt_gib(best['free'])} free of "
            f"{fmt_gib(best['total'])}: lower train.batch_size (raise train.grad_accum to keep "
            "the effective batch) or train.max_length, or set model.gradient_checkpointing / "
            "model.load_in_4bit"]


def beside_measured(plan: dict, manifest_jobs: dict) -> list[str]:
    """One line per trained job of a finished run: what it measured (steps, tokens/s, peak GPU
    memory, seconds) beside the dry run's estimate for the same config. torch's peak
    allocation leaves out the CUDA context, so the estimate is shown without its overhead too.
    """
    estimate = {f"train:{j['name']}": j.get("cost") for j in plan["jobs"]}
    lines = []
    for name, job in sorted(manifest_jobs.items()):
        if not name.startswith("train:"):
            continue
        tokens = job.get("tokens_seen") or job.get("trained_tokens") or 0
        rate = tokens / job["train_runtime"] if job.get("train_runtime") else 0
        line = (f"{name:12s} {job.get('steps')} steps  {tokens} tokens  {rate:,.0f} trained "
                f"tokens/s  peak GPU memory {job.get('peak_gpu_memory_gib')} GiB")
        est = estimate.get(name)
        if est:
            mem = est["memory"]
            tensors = mem["total_bytes"] - mem["parts"]["overhead"]
            line += (f" | estimate {fmt_gib(tensors)} in tensors ({fmt_gib(mem['total_bytes'])} "
                     f"with the overhead, {mem['where']}), {est['seconds']:.0f} s vs "
                     f"{job.get('seconds')} s")
        lines.append(line)
    return lines
