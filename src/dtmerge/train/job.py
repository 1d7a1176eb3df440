"""One training job (a sub-model or the SFT baseline) and the function every executor runs.

Executors (in-process, process pool, Ray) call `run_train_job` with plain, picklable
arguments, so the same body runs wherever the job is scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtmerge.rundir import RunDir


@dataclass(frozen=True)
class TrainJob:
    name: str
    data: Path
    out: Path
    # What a recipe changes in training (seed, penalty, replay text, LoRA-MoE...); None for
    # plain SFT on `data`. Plain JSON, part of the job's fingerprint. See train/recipe_trainer.py.
    spec: dict[str, Any] | None = field(default=None, compare=False)


def run_train_job(cfg_json: dict, run_root: str, job: TrainJob, fingerprint: str, device: str | None):
    """Body of one job; also the entry point of pool workers (hence plain arguments)."""
    from dtmerge.executors import pin_job_device

    pin_job_device(device)  # one device per job, never DataParallel over all of them
    from dtmerge.config import RunConfig
    from dtmerge.train.trainer import train_model

    cfg = RunConfig.model_validate(cfg_json)
    run = RunDir(run_root)
    callbacks = []
    if cfg.monitor.enabled:
        from dtmerge.evaluate.monitor import build_monitor

        callbacks.append(build_monitor(cfg, run, job.name))
    return train_model(cfg, job.data, job.out, job.name, callbacks=callbacks,
                       fingerprint=fingerprint, spec=job.spec)
