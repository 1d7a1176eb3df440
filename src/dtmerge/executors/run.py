"""`run_jobs`: a stage's jobs, run here, in the process pool or on Ray, as its placement says."""

from __future__ import annotations

from typing import Any, Callable

from dtmerge.executors.base import Job, Placement, describe_error
from dtmerge.executors.pool import run_pool
from dtmerge.executors.ray import run_ray
from dtmerge.executors.threads import call_with_threads
from dtmerge.executors.warmup import process_claimed, warm_up_worker

def run_jobs(fn: Callable, jobs: list[Job], where: Placement, *, on_start: Callable[[str], None],
             on_done: Callable[[str, Any], None], on_fail: Callable[[str, str], None]) -> list[str]:
    """Run `fn(*args, slot)` for every job; return "name (Error: message)" per failed job."""
    if not jobs:
        return []
    if where.kind == "ray":
        return run_ray(fn, jobs, where, on_start, on_done, on_fail)
    if where.kind == "pool" and len(jobs) > 1 and len(where.slots) > 1:
        return run_pool(fn, jobs, where, on_start, on_done, on_fail)
    if process_claimed():
        warm_up_worker()
    for name, args in jobs:
        on_start(name)
        try:
            result = call_with_threads(fn, where.threads, *args, where.slots[0])
        except BaseException as err:
            on_fail(name, describe_error(err))
            raise
        on_done(name, result)
    return []
