"""Trainer callbacks owned by the train stage: divergence guard and a progress file."""

from __future__ import annotations

import math
import os
from pathlib import Path

from transformers import TrainerCallback

from dtmerge.errors import TrainingError
from dtmerge.rundir import atomic_write_json


class DivergenceGuard(TrainerCallback):
    """Stop with a clear error at the first non-finite loss, naming the model and step."""

    def __init__(self, job_name: str):
        self.job_name = job_name

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        bad = {k: logs[k] for k in ("loss", "grad_norm")
               if isinstance(logs.get(k), (int, float)) and not math.isfinite(logs[k])}
        if bad:
            what = ", ".join(f"{k} = {v}" for k, v in bad.items())
            raise TrainingError(
                f"{self.job_name}: training diverged ({what}) at step {state.global_step}. "
                "Lower train.learning_rate, raise train.warmup_steps, or use float32/bfloat16 "
                "instead of float16; rerun the same command to restart this job"
            )


class ProgressFile(TrainerCallback):
    """Writes step / max_steps / loss to a JSON file so `dtm watch` can follow the job."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.last_loss = None

    def _write(self, state, status: str):
        atomic_write_json(self.path, {
            "step": state.global_step, "max_steps": state.max_steps,
            "epoch": state.epoch, "loss": self.last_loss, "status": status,
            "pid": os.getpid(),  # the process to look at (or stop) while it trains
        })

    def on_train_begin(self, args, state, control, **kwargs):
        self._write(state, "training")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_loss = logs["loss"]
        self._write(state, "training")

    def on_train_end(self, args, state, control, **kwargs):
        self._write(state, "saving")
