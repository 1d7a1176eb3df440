"""Train one model on one data portion with TRL's SFTTrainer (LoRA through PEFT, or full).

Every sub-model and the SFT baseline go through `train_model` with the same `TrainConfig`, so
the only difference between them is the data they see.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from dtmerge.config import RunConfig
from dtmerge.errors import DataError, TrainingError
from dtmerge.models import load_model, load_tokenizer, pick_dtype
from dtmerge.rundir import atomic_dir, atomic_write_text
from dtmerge.train.callbacks import ConsoleProgress, DivergenceGuard, ProgressFile
from dtmerge.train.targets import resolve_target_modules


def _read_portion(path: Path):
    from datasets import Dataset

    from dtmerge.data.jsonl import read_jsonl

    records = read_jsonl(path)
    if not records:
        raise DataError(f"{path}: no training examples in this portion")
    # Only the two columns TRL trains on: extra metadata (source, id) would reach the collator.
    # Plain-text records ({"text"}: the replay recipe's) are added by RecipeTrainer instead.
    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]}
                              for r in records if "prompt" in r])


def lora_config(cfg: RunConfig, model):
    from peft import LoraConfig

    lora = cfg.train.lora
    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
        target_modules=resolve_target_modules(model, lora.target_modules), task_type="CAUSAL_LM",
    )


def sft_config(cfg: RunConfig, work_dir: Path, report_to: list[str]):
    import torch
    from trl import SFTConfig

    t = cfg.train
    dtype = pick_dtype(cfg.model.dtype)
    on_gpu = torch.cuda.is_available()
    kwargs: dict[str, Any] = dict(
        output_dir=str(work_dir),
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_steps,
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps,
        weight_decay=t.weight_decay,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        adam_epsilon=t.adam_epsilon,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=1,
        max_length=t.max_length,
        completion_only_loss=True,
        bf16=on_gpu and dtype == torch.bfloat16,
        fp16=on_gpu and dtype == torch.float16,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        report_to=report_to,
        dataloader_num_workers=0,
        dataloader_pin_memory=on_gpu,
    )
    if "activation_checkpointing" in getattr(SFTConfig, "__dataclass_fields__", {}):
        # transformers 5 renamed it; the old name still works but warns on every job
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")
    passthrough = dict(t.sft_passthrough)  # SFTConfig fields given in `train` under TRL's names
    if "report_to" in passthrough:  # trackers named there join those of `tracking`
        kwargs["report_to"] = list(dict.fromkeys(report_to + passthrough_trackers(cfg)))
        del passthrough["report_to"]
    kwargs.update(passthrough)
    kwargs.update(t.trainer_kwargs)
    return SFTConfig(**kwargs)


def passthrough_trackers(cfg: RunConfig) -> list[str]:
    """The trackers named by `train.report_to` (TRL's name), "none" left out."""
    value = cfg.train.sft_passthrough.get("report_to") or []
    return [v for v in ([value] if isinstance(value, str) else list(value)) if v != "none"]


def _live_trackers(cfg: RunConfig, job_name: str) -> list[str]:
    """transformers' own callbacks stream the training curves live: TensorBoard into the work
    dir, MLflow into the run's store (one MLflow run per job, named after it), W&B as one run
    per job grouped under the run's name."""
    trackers = ["tensorboard"] if cfg.tracking.tensorboard else []
    if cfg.tracking.wandb or "wandb" in passthrough_trackers(cfg):
        from dtmerge.mlflow_store import import_wandb, wandb_environment
        from dtmerge.rundir import RunDir

        import_wandb()  # a clear error when the extra is missing
        os.environ.update(wandb_environment(cfg, RunDir(cfg.run_dir)))
        trackers.append("wandb")
    if cfg.tracking.mlflow:
        from dtmerge.rundir import RunDir
        from dtmerge.mlflow_store import import_mlflow, tracking_uri

        mlflow = import_mlflow()  # a clear error when the extra is missing
        uri = tracking_uri(cfg, RunDir(cfg.run_dir))
        # Set, not defaulted, and on mlflow itself too: transformers' callback ignores the
        # variable once any URI was set in this process (e.g. by an earlier run's report).
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ["MLFLOW_EXPERIMENT_NAME"] = cfg.name
        mlflow.set_tracking_uri(uri)
        trackers.append("mlflow")
    return trackers


def _last_checkpoint(work_dir: Path) -> str | None:
    """The newest complete checkpoint. transformers writes trainer_state.json last, so a
    checkpoint killed while being saved lacks a readable one and is skipped (and removed)."""
    ckpts = sorted(glob.glob(str(work_dir / "checkpoint-*")), key=lambda p: int(p.rsplit("-", 1)[1]))
    for ckpt in reversed(ckpts):
        try:
            json.loads((Path(ckpt) / "trainer_state.json").read_text())
            return ckpt
        except (OSError, ValueError):
            shutil.rmtree(ckpt, ignore_errors=True)
    return None


def train_model(cfg: RunConfig, data_path: str | Path, out_dir: str | Path, job_name: str,
                callbacks: list | None = None, fingerprint: str = "",
                spec: dict | None = None, base_model=None) -> dict[str, Any]:
    """Fine-tune the base model on one JSONL portion and save it to `out_dir`.

    Checkpoints go to a work directory beside `out_dir`; a rerun with the same fingerprint
    resumes from the last checkpoint, a changed fingerprint starts afresh. `out_dir` appears
    only once the model is completely saved.

    `spec` is a recipe's change to the job (seed, penalty, replay, LoRA-MoE; see
    train/recipe_trainer.py); None trains plain SFT.

    `base_model`: an already loaded base to wrap instead of loading one (joint training,
    train/joint.py, shares one base between a stage's LoRA jobs).

    Returns:
        A dict with the number of examples, steps, final training loss and runtime.
    """
    import torch

    if spec and "seed" in spec:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": spec["seed"]})})
    out_dir = Path(out_dir)
    work_dir = _work_dir(out_dir, fingerprint)
    dataset = _read_portion(Path(data_path))
    tokenizer = load_tokenizer(cfg.model)
    trainer, save = _build_trainer(cfg, spec, dataset, tokenizer, Path(data_path), work_dir,
                                   job_name, callbacks, base_model)
    if len(trainer.train_dataset) == 0:
        raise DataError(
            f"{data_path}: every example lost its whole response to truncation at "
            f"train.max_length={cfg.train.max_length} tokens; raise train.max_length"
        )
    resume = _last_checkpoint(work_dir)
    if resume:
        print(f"[resume] {job_name} from step {resume.rsplit('-', 1)[1]}", flush=True)
    scale_before = _largest_trainable(trainer.model)
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except torch.cuda.OutOfMemoryError as err:
        raise out_of_memory_error(cfg, job_name) from err
    finally:
        _finish_wandb_run()
    check_trained_weights(trainer.model, job_name, scale_before, cfg.train.learning_rate)
    flat = loss_never_fell(trainer.state.log_history)
    if flat:
        print(f"[warn] {job_name}: {flat}", flush=True)
    with atomic_dir(out_dir) as tmp:
        if save is not None:
            save(trainer, tmp)
        else:
            trainer.model.save_pretrained(tmp)  # adapter only for PEFT models
        tokenizer.save_pretrained(tmp)
        trainer.state.save_to_json(str(tmp / "trainer_state.json"))  # loss curve, steps
        for extra in ("monitor.jsonl", "progress.json"):
            if (work_dir / extra).exists():
                shutil.copy(work_dir / extra, tmp / extra)
    shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "examples": len(dataset),
        "trained_examples": len(trainer.train_dataset),  # with replayed text
        "trained_tokens": _trained_tokens(trainer, result.global_step),
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "train_runtime": result.metrics.get("train_runtime"),
        "method": cfg.train.method,
        "pid": os.getpid(),
        **({"warning": flat} if flat else {}),
        "threads": torch.get_num_threads(),
        "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
        # Counted only with train.include_num_input_tokens_seen (a TRL field passed through).
        "tokens_seen": int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0),
        "peak_gpu_memory_gib": (round(torch.cuda.max_memory_allocated() / 2**30, 3)
                                if torch.cuda.is_available() else None),
    }


def out_of_memory_error(cfg: RunConfig, job_name: str) -> TrainingError:
    """What a CUDA out-of-memory error in job `job_name` means for its config, and what to
    lower; the checkpoints it saved stay, so the rerun resumes."""
    t = cfg.train
    smaller = max(1, t.batch_size // 2)
    accum = t.grad_accum * t.batch_size // smaller
    lines = [f"train.batch_size={smaller} train.grad_accum={accum} (the same effective batch "
             f"of {t.batch_size * t.grad_accum})" if t.batch_size > 1 else None,
             f"train.max_length={max(8, t.max_length // 2)} (examples longer are truncated)",
             None if cfg.model.gradient_checkpointing else
             "model.gradient_checkpointing=true (recomputes activations: slower, far less memory)"]
    if t.method == "full":
        lines.append("train.method=lora (no optimizer state for the base weights)")
    return TrainingError(
        f"{job_name}: CUDA ran out of memory while training (train.batch_size={t.batch_size}, "
        f"train.grad_accum={t.grad_accum}, train.max_length={t.max_length}, "
        f"train.method={t.method}). Lower one and rerun (finished checkpoints are resumed): "
        + "; ".join(line for line in lines if line))


def one_device(args, job_name: str):
    """Train on one device even where several are visible to this process (CUDA started
    before the job could pin its device, e.g. in a notebook): transformers would otherwise
    wrap the model in DataParallel and multiply the effective batch by the device count."""
    if args.n_gpu > 1:
        print(f"[warn] {job_name}: {args.n_gpu} GPUs visible, training on {args.device} only "
              "(one device per job; train.devices runs jobs side by side on the others)",
              flush=True)
        args._n_gpu = 1
    return args


def _finish_wandb_run() -> None:
    """End the job's W&B run: transformers' callback leaves it open, and the next job in this
    process would otherwise log into it."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


# Trained weights this many times larger than the largest before training have exploded.
_EXPLODED_FACTOR = 100.0



def _work_dir(out_dir: Path, fingerprint: str) -> Path:
    """The job's checkpoint directory beside `out_dir`, emptied when it holds another config's
    checkpoints (never resume from them), stamped with this job's fingerprint."""
    work_dir = out_dir.parent / ".work" / out_dir.name
    stamp = work_dir / "fingerprint"
    if work_dir.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, fingerprint)
    return work_dir


def _build_trainer(cfg: RunConfig, spec: dict | None, dataset, tokenizer, data_path: Path,
                   work_dir: Path, job_name: str, callbacks: list | None, base_model=None):
    """TRL's SFTTrainer (or the recipes' subclass) over the base model, and the recipe's own
    save function (None: `save_pretrained`)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTTrainer

    model = load_model(cfg.model) if base_model is None else base_model
    peft_config = lora_config(cfg, model) if cfg.train.method == "lora" else None
    trainer_cls, recipe_kwargs, save = SFTTrainer, {}, None
    if spec and set(spec) - {"seed"}:
        from dtmerge.train.recipe_trainer import RecipeTrainer, prepare_recipe

        setup = prepare_recipe(cfg, spec, model, peft_config, tokenizer, data_path)
        model, peft_config, recipe_kwargs, save = (setup.model, setup.peft_config,
                                                   setup.trainer_kwargs, setup.save)
        trainer_cls = RecipeTrainer
    args = one_device(sft_config(cfg, work_dir, _live_trackers(cfg, job_name)), job_name)
    args.run_name = job_name
    trainer = trainer_cls(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[DivergenceGuard(job_name), ProgressFile(work_dir / "progress.json"),
                   ConsoleProgress(job_name), *(callbacks or [])], **recipe_kwargs,
    )
    # ConsoleProgress draws this job's one progress line instead of the Trainer's bar and
    # its per-log dict printouts
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer, save

def _largest_trainable(model) -> float:
    import torch

    with torch.no_grad():
        return max((p.detach().abs().max().item() for p in model.parameters()
                    if p.requires_grad and p.numel()), default=0.0)


def check_trained_weights(model, job_name: str, scale_before: float, lr: float) -> None:
    """Refuse to save a job whose trained weights are non-finite or exploded (a learning rate
    far too high can leave a flat, finite loss and ruined weights): the job is not finished."""
    import torch

    limit = _EXPLODED_FACTOR * max(scale_before, 1.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad or not p.numel():
                continue
            largest = p.detach().abs().max().item()
            if not math.isfinite(largest) or largest > limit:
                state = ("non-finite" if not math.isfinite(largest)
                         else f"exploded (max |w| = {largest:.3g}, over {limit:.3g})")
                raise TrainingError(
                    f"{job_name}: trained weight '{name}' is {state} after training, so the job "
                    f"is not saved: lower train.learning_rate (now {lr:g}) and rerun")


def loss_never_fell(log_history: list[dict]) -> str | None:
    """A warning when the logged training loss never went below its first value."""
    losses = [h["loss"] for h in log_history if isinstance(h.get("loss"), (int, float))]
    if len(losses) >= 3 and min(losses[1:]) >= losses[0]:
        return (f"training loss never fell below its first value ({losses[0]:.4g}; last "
                f"{losses[-1]:.4g} over {len(losses)} logged steps): check train.learning_rate")
    return None


def _trained_tokens(trainer, steps: int) -> int | None:
    """Tokens the optimizer saw (steps x effective batch x mean example length): the recipes'
    training cost, comparable between recipes whose data differ in length."""
    dataset = trainer.train_dataset
    try:
        lengths = [len(ids) for ids in dataset["input_ids"]]
    except (KeyError, TypeError):
        return None
    if not lengths:
        return 0
    args = trainer.args
    seen = steps * args.per_device_train_batch_size * args.gradient_accumulation_steps
    return round(seen * sum(lengths) / len(lengths))
