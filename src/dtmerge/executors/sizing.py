"""How many jobs run at once and how many torch threads each gets (`parallel_jobs: auto`,
`train.threads`), judged from the machine's cores and the model's size."""

from __future__ import annotations

import os
from pathlib import Path

from dtmerge.executors.devices import nvidia_visible

def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Weights up to this size count as small for `parallel_jobs: auto`: for the demo's 0.77M-parameter
# model, `dtm run` of four sub-models and their evaluation took 30.4 s with two 1-thread jobs
# side by side against 42.4 s one after another with two threads each (medians of 5, 2-core
# machine, benchmarks/executor_scaling.py); a large model's matrix products use every core
# well, and its copies in memory would multiply.
SMALL_MODEL_BYTES = 256 * 2 ** 20


def model_weight_bytes(model) -> int | None:
    """Bytes of a local model directory's weight files (None: not a local directory)."""
    path = Path(model)
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin", "*.pt")
               for f in path.glob(pattern))


def parallel_jobs(setting: int | str, model, jobs: int, on_cpu: bool) -> int:
    """How many jobs run at once: `setting` when a number; for "auto", one per usable core
    (at most `jobs`) when the model is small and runs on a CPU, else one."""
    if setting != "auto":
        return int(setting)
    size = model_weight_bytes(model)
    if not on_cpu or size is None or size > SMALL_MODEL_BYTES:
        return 1
    return max(1, min(usable_cores(), jobs))


def pool_expected(setting: int | str, devices, model) -> bool:
    """Whether a stage set to `setting` parallel jobs (and these train devices) will run a
    process pool, judged before torch is imported, to start the pool early. "auto" counts when
    the model is small, local and no GPU is visible; a wrong guess costs an idle fork server's
    imports, never a result (the stage decides the placement itself)."""
    if devices and len(devices) > 1:
        return True
    # The stages' own rule, with a guess for the GPU and two jobs (a pool needs at least two).
    return parallel_jobs(setting, model, jobs=2, on_cpu=not nvidia_visible()) > 1


def threads_per_job(requested: int | None, jobs_at_once: int, cpus: float | None = None) -> int:
    """The torch threads of one job: as asked, else the cores it was given (its Ray CPUs, or
    this machine's cores shared by the jobs that run at once, at most OMP_NUM_THREADS when
    set), at least one."""
    if requested:
        return requested
    if cpus is not None:
        return max(1, int(cpus))
    cores = usable_cores()
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        cores = min(cores, max(1, int(os.environ["OMP_NUM_THREADS"])))
    return max(1, cores // max(1, jobs_at_once))
