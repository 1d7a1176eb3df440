"""Joint LoRA training (`train.joint: true`): a stage's LoRA jobs in one process over one base.

Separate jobs each load the base model; pooled jobs hold one copy per worker. Here the base is
loaded once per process and kept; each job wraps it with its own LoRA adapter, trains it with
the very same code as a separate job (`train_model`: TRL's loop, its optimizer, scheduler, data
order, checkpoints and resume, callbacks, output files), saves it, and puts the base's own
layers back for the next job. The adapters therefore equal the separately trained ones.

Why adapters take turns rather than share one routed batch: a routed LoRA layer lets one
forward pass serve all K adapters, which pays off only where a bigger batch runs faster per
example. On CPU it does not (one batch of 16 vs four of 4 through the demo model: 0.9-1.1x,
measured for docs/joint-training.md), and taking turns keeps TRL's loop, so every job's results,
checkpoints and files are those of a separate job.

Jobs that cannot share a frozen base fall back, with a logged reason, to the ordinary job
body: full fine-tuning (it changes the base) and recipes that change the loss or the data
(l2, ewc, replay, lora-moe...).
"""

from __future__ import annotations

import gc
import os
from typing import Any

from dtmerge.config import RunConfig
from dtmerge.rundir import RunDir, hash_obj
from dtmerge.train.job import TrainJob, run_train_job

# The base model this process holds for joint jobs, keyed by the model config that loaded it.
_SHARED: dict[str, Any] = {}


def joint_fallback(cfg: RunConfig, job: TrainJob) -> str | None:
    """Why `job` cannot be trained over the shared base (None: it can)."""
    if cfg.train.method != "lora":
        return ("train.method is full: full fine-tuning changes the base model, which joint "
                "training shares between jobs")
    changed = sorted(set(job.spec or {}) - {"seed"})
    if changed:
        return f"its recipe changes the training itself ({', '.join(changed)})"
    return None


def shared_base(cfg: RunConfig):
    """The base model of `cfg.model`, loaded on the first call of this process and kept."""
    from dtmerge.models import load_model

    key = hash_obj(cfg.model.model_dump(mode="json"))
    if _SHARED.get("key") != key:
        release_shared_base()
        _SHARED.update(key=key, model=load_model(cfg.model),
                       loads=_SHARED.get("loads", 0) + 1)
    return _SHARED["model"]


def release_shared_base() -> None:
    """Drop the held base (a later joint job loads it again)."""
    loads = _SHARED.get("loads", 0)
    _SHARED.clear()
    _SHARED["loads"] = loads
    _free_memory()


def base_loads() -> int:
    """How many times this process loaded a shared base (1 for a whole joint stage)."""
    return _SHARED.get("loads", 0)


def strip_adapters(model) -> int:
    """Put the base's own layers back where PEFT wrapped them with LoRA layers, in place, and
    forget PEFT's config on the model, so the next job wraps a clean base. Returns the number
    of layers restored."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = [(name, module) for name, module in model.named_modules()
               if isinstance(module, BaseTunerLayer)]
    for name, module in wrapped:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        model.__dict__.pop(attr, None)
    return len(wrapped)


def train_on_shared_base(cfg: RunConfig, job: TrainJob, fingerprint: str,
                         callbacks: list | None = None) -> dict[str, Any]:
    """Train one LoRA job over this process's shared base; the same result as `train_model`
    loading its own base."""
    from dtmerge.train.trainer import train_model

    base = shared_base(cfg)
    try:
        info = train_model(cfg, job.data, job.out, job.name, callbacks=callbacks,
                           fingerprint=fingerprint, spec=job.spec, base_model=base)
    except BaseException:
        # A failed job may leave LoRA layers or a half-set PEFT state on the base: never
        # reuse it
        release_shared_base()
        raise
    strip_adapters(base)
    _free_memory()  # the job's optimizer state and activations, before the next job
    return {**info, "joint": True, "base_loads": base_loads()}


def run_joint_train_job(cfg_json: dict, run_root: str, job: TrainJob, fingerprint: str,
                        device: str | None):
    """The joint job body, with `run_train_job`'s arguments: jobs that can share the base do,
    the others run as separate jobs (a logged reason each)."""
    cfg = RunConfig.model_validate(cfg_json)
    reason = joint_fallback(cfg, job)
    if reason is not None:
        print(f"[train] {job.name}: trained as a separate job, not jointly: {reason}", flush=True)
        return run_train_job(cfg_json, run_root, job, fingerprint, device)
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    callbacks = []
    if cfg.monitor.enabled:
        from dtmerge.evaluate.monitor import build_monitor

        callbacks.append(build_monitor(cfg, RunDir(run_root), job.name))
    return train_on_shared_base(cfg, job, fingerprint, callbacks)


def joint_applies(cfg: RunConfig, log=print) -> bool:
    """Whether the stage runs its jobs jointly (train.joint with LoRA); logs what it overrides,
    or why it does not apply."""
    if not cfg.train.joint:
        return False
    if cfg.train.method != "lora":
        log("[train] train.joint ignored: it shares a frozen base between LoRA jobs, and "
            "train.method is full; the jobs run separately as configured")
        return False
    ignored = []
    if cfg.train.executor == "ray":
        ignored.append("train.executor ray")
    if cfg.train.parallel_jobs != 1:
        ignored.append(f"train.parallel_jobs {cfg.train.parallel_jobs}")
    if cfg.train.devices and len(cfg.train.devices) > 1:
        ignored.append("train.devices beyond the first")
    note = f" ({', '.join(ignored)} ignored: one process holds the base)" if ignored else ""
    log(f"[train] joint: LoRA jobs share one base model in this process{note}")
    return True


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # the driver of a run plans jobs without torch
        pass
