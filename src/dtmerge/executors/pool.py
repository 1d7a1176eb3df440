"""The process pool: at most one job per slot at a time, in processes forked from a server
that preloaded the job modules (spawned where there is no fork server)."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

from dtmerge.executors.base import Placement, settle
from dtmerge.executors.threads import call_with_threads

def _pool_context():
    """A fork server with the heavy libraries preloaded, where available, else spawn.

    Spawned workers each import torch/transformers/TRL afresh (10-30 s on a busy 2-core
    machine), which dwarfs a small model's job; forking from a server that imported them once
    costs almost nothing. The server never runs a model itself, so it holds no CUDA context
    or OpenMP threads that a fork could not carry over.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["dtmerge.pool_preload"])  # the first call counts (one server)
    return ctx


def start_pool_server() -> None:
    """Start the pool's fork server now, without waiting for it.

    Its imports (torch, transformers, TRL, lm-eval: about 6 s here) then run beside the
    driver's own work before the first job (checking inputs imports transformers and lm-eval
    and indexes the tasks, another ~6 s) instead of after it, which they did when the server
    started at the first job: on 2 cores the two overlap. A no-op where there is no fork server.
    """
    ctx = _pool_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def in_pool_worker(fn: Callable, threads: int | None, *args):
    """A pool worker's entry: `dtm`'s terminal policy (the worker is forked from the fork
    server, not from `dtm`'s process, so nothing of that process's folding reached it), then
    the job."""
    from dtmerge.terminal import fold_library_output

    fold_library_output()
    return call_with_threads(fn, threads, *args)


def run_pool(fn, jobs, where: Placement, on_start, on_done, on_fail) -> list[str]:
    failures: list[str] = []
    pending = list(jobs)
    slots = list(where.slots)
    with ProcessPoolExecutor(max_workers=len(slots), mp_context=_pool_context()) as pool:
        running = {}
        while pending or running:
            while pending and slots:
                name, args = pending.pop(0)
                slot = slots.pop(0)
                on_start(name)
                running[pool.submit(in_pool_worker, fn, where.threads, *args, slot)] = (name, slot)
            done = next(as_completed(running))
            name, slot = running.pop(done)
            slots.append(slot)
            settle(name, done.result, on_done, on_fail, failures)
    return failures
