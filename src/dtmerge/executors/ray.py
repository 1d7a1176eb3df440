"""Ray: one task per job with its own CPU/GPU reservation, rerun when its worker or node dies."""

from __future__ import annotations

from typing import Callable

from dtmerge.errors import DtmError
from dtmerge.executors.base import Placement, settle
from dtmerge.executors.threads import call_with_threads
from dtmerge.executors.warmup import warm_up_worker

def in_ray_worker(fn: Callable, threads: int | None, *args):
    """A Ray task's entry: the worker process preloads the job modules on its first task, as
    the pool's fork server does (`warm_up_worker`), then runs the job."""
    warm_up_worker()
    return call_with_threads(fn, threads, *args)


def connect_ray(address: str | None):
    """The `ray` module, connected to `address` (or a local cluster started on first use)."""
    try:
        import ray
    except ImportError:
        raise DtmError("executor ray needs Ray: pip install 'dtmerge[ray]'") from None
    if not ray.is_initialized():
        # A cluster started for this process alone ("local") serves this machine: bind loopback.
        local = {"_node_ip_address": "127.0.0.1"} if address == "local" else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=True,
                 ignore_reinit_error=True, **local)
    return ray


def ray_task_options(where: Placement) -> dict:
    """Ray's options for one job's task: the placement's reservation, plus the OpenMP
    environment when a job runs several threads. OpenMP reads it when torch loads, so it
    must be in the worker's environment: a runtime_env, for which Ray starts workers of its
    own. One thread needs none (`call_with_threads` sets torch's count, and Ray sets
    OMP_NUM_THREADS to a 1-CPU task's CPU count itself), so such tasks run in the workers Ray
    prestarted: they started ~1 s sooner in a traced run of benchmarks/executor_scaling.py."""
    options = dict(where.ray_options)
    threads = where.threads or 1
    if threads > 1:
        options["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(threads),
                                               "OMP_WAIT_POLICY": "PASSIVE"}}
    return options


def run_ray(fn, jobs, where: Placement, on_start, on_done, on_fail) -> list[str]:
    ray = connect_ray(where.ray_address)
    # retry_exceptions=False: only a dead worker or node reruns the task (system failure).
    threads = where.threads or 1
    remote = ray.remote(retry_exceptions=False, **ray_task_options(where))(in_ray_worker)
    refs = {}
    for name, args in jobs:
        on_start(name)
        refs[remote.remote(fn, threads, *args, None)] = name
    failures: list[str] = []
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        settle(refs[done[0]], lambda ref=done[0]: ray.get(ref), on_done, on_fail, failures)
    return failures
