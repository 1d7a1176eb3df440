"""A job's torch and OpenMP threads, set in the process that runs it."""

from __future__ import annotations

import os
from typing import Callable

def set_threads(threads: int) -> None:
    """Use `threads` torch threads here and in processes started from here.

    OpenMP threads spin while waiting for each other by default: when another process holds a
    core, a spinning thread burns its time slice waiting, and a step takes many times longer
    (benchmarks/thread_count.py). Passive waiting (threads sleep) avoids that; it only takes
    effect in processes started after it is set, which is why the CLI sets it at start-up.
    """
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    if threads > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(threads)


def call_with_threads(fn: Callable, threads: int | None, *args):
    """Run one job body with its thread count (the entry point of pool and Ray workers)."""
    if threads is None:
        return fn(*args)
    import torch

    before = torch.get_num_threads()
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    set_threads(threads)
    try:
        return fn(*args)
    finally:  # an in-process job leaves the caller as it was
        torch.set_num_threads(before)
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
