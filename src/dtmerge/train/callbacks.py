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


class ConsoleProgress(TrainerCallback):
    """One progress line per training job on the terminal (the libraries' own bars are off,
    see cli/output.py): a live tqdm bar on a terminal, one summary line in a log file."""

    def __init__(self, job_name: str):
        import os

        self.job_name = job_name
        self.bar = None
        self.loss = None
        self.quiet = os.environ.get("DTM_QUIET") == "1"  # dtm -q

    def on_train_begin(self, args, state, control, **kwargs):
        import sys

        from tqdm import tqdm

        # explicit disable=False: drawn even with TQDM_DISABLE set
        if sys.stderr.isatty() and not self.quiet:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, disable=False,
                            desc=f"[train] {self.job_name}", unit="step", leave=True,
                            dynamic_ncols=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = logs["loss"]
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{self.loss:.4f}", refresh=False)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            return
        if self.quiet:
            return
        loss = f", loss {self.loss:.4f}" if isinstance(self.loss, (int, float)) else ""
        print(f"[train] {self.job_name}: {state.global_step}/{state.max_steps} steps{loss}",
              flush=True)
