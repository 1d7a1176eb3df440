"""Train one model on one data portion with TRL's SFTTrainer (LoRA through PEFT, or full).

Every sub-model and the SFT baseline go through `train_model` with the same `TrainConfig`, so
the only difference between them is the data they see.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path
from typing import Any

from dtmerge.config import RunConfig
from dtmerge.errors import DataError
from dtmerge.models import load_model, load_tokenizer, pick_dtype
from dtmerge.rundir import atomic_dir, atomic_write_text
from dtmerge.train.callbacks import DivergenceGuard, ProgressFile
from dtmerge.train.targets import resolve_target_modules


def _read_portion(path: Path):
    from datasets import Dataset

    from dtmerge.data.jsonl import read_jsonl

    records = read_jsonl(path)
    if not records:
        raise DataError(f"{path}: no training examples in this portion")
    # Only the two columns TRL trains on: extra metadata (source, id) would reach the collator.
    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in records])


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
    kwargs.update(t.sft_passthrough)  # SFTConfig fields given in `train` under TRL's names
    kwargs.update(t.trainer_kwargs)
    return SFTConfig(**kwargs)


def _live_trackers(cfg: RunConfig, job_name: str) -> list[str]:
    """transformers' own callbacks stream the training curves live: TensorBoard into the work
    dir, MLflow into the run's store (one MLflow run per job, named after it)."""
    trackers = ["tensorboard"] if cfg.tracking.tensorboard else []
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
    """The newest complete checkpoint: the Trainer writes trainer_state.json last, so a job
    killed while saving leaves a directory without it, which is not resumed from."""
    ckpts = sorted(glob.glob(str(work_dir / "checkpoint-*")), key=lambda p: int(p.rsplit("-", 1)[1]))
    complete = [c for c in ckpts if (Path(c) / "trainer_state.json").exists()]
    return complete[-1] if complete else None


def train_model(cfg: RunConfig, data_path: str | Path, out_dir: str | Path, job_name: str,
                callbacks: list | None = None, fingerprint: str = "") -> dict[str, Any]:
    """Fine-tune the base model on one JSONL portion and save it to `out_dir`.

    Checkpoints go to a work directory beside `out_dir`; a rerun with the same fingerprint
    resumes from the last checkpoint, a changed fingerprint starts afresh. `out_dir` appears
    only once the model is completely saved.

    Returns:
        A dict with the number of examples, steps, final training loss and runtime.
    """
    import torch
    from trl import SFTTrainer

    out_dir = Path(out_dir)
    work_dir = out_dir.parent / ".work" / out_dir.name
    stamp = work_dir / "fingerprint"
    if work_dir.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
        shutil.rmtree(work_dir)  # stale checkpoints of another config: never resume from them
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, fingerprint)

    dataset = _read_portion(Path(data_path))
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model)
    peft_config = lora_config(cfg, model) if cfg.train.method == "lora" else None
    args = sft_config(cfg, work_dir, _live_trackers(cfg, job_name))
    args.run_name = job_name
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[DivergenceGuard(job_name), ProgressFile(work_dir / "progress.json"),
                   *(callbacks or [])],
    )
    if len(trainer.train_dataset) == 0:
        raise DataError(
            f"{data_path}: every example lost its whole response to truncation at "
            f"train.max_length={cfg.train.max_length} tokens; raise train.max_length"
        )
    resume = _last_checkpoint(work_dir)
    result = trainer.train(resume_from_checkpoint=resume)
    with atomic_dir(out_dir) as tmp:
        trainer.model.save_pretrained(tmp)  # adapter only for PEFT models
        tokenizer.save_pretrained(tmp)
        trainer.state.save_to_json(str(tmp / "trainer_state.json"))  # loss curve, steps
        for extra in ("monitor.jsonl", "progress.json"):
            if (work_dir / extra).exists():
                shutil.copy(work_dir / extra, tmp / extra)
    shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "examples": len(dataset),
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "train_runtime": result.metrics.get("train_runtime"),
        "method": cfg.train.method,
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
        "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
        # Counted only with train.include_num_input_tokens_seen (a TRL field passed through).
        "tokens_seen": int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0),
        "peak_gpu_memory_gib": (round(torch.cuda.max_memory_allocated() / 2**30, 3)
                                if torch.cuda.is_available() else None),
    }
