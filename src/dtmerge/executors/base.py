"""What a job is and where a stage places it; how a finished or failed job is recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Job = tuple[str, tuple]  # (name, positional arguments before the device slot)


@dataclass(frozen=True)
class Placement:
    """How a stage's jobs are placed."""

    kind: str = "local"  # local | pool | ray
    slots: tuple = (None,)  # pool: one concurrent job per slot (device id or None)
    ray_address: str | None = None
    ray_options: dict[str, Any] = field(default_factory=dict)  # num_cpus, num_gpus, max_retries
    threads: int | None = None  # torch threads per job (None: leave the process default)


def longest_first(jobs: list[Job], cost) -> list[Job]:
    """`jobs` with the costliest first (`cost(name)`: any comparable estimate), ties in their
    given order. A pool that starts its long jobs first ends with short ones side by side,
    instead of one long job running alone while the other slots idle (on the demo's recipes,
    replay's double data started last held one of two cores alone for 90 s)."""
    return sorted(jobs, key=lambda job: -cost(job[0]))


def describe_error(err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err  # a Ray task error wraps the job's own error
    return f"{type(cause).__name__}: {cause}"


def settle(name, get_result, on_done, on_fail, failures):
    try:
        on_done(name, get_result())
    except Exception as err:  # one job's crash must not stop the others
        on_fail(name, describe_error(err))
        failures.append(f"{name} ({describe_error(err)})")
