"""Where independent jobs run: in this process, in a pool of spawned processes, or on Ray.

Training jobs (the K sub-models and SFT) and evaluation jobs (one per variant) are independent,
so each stage hands a list of named calls to `run_jobs` and gets every result back in this
(driver) process, which alone writes the manifest. The job body is the same function in all
three places, called with plain, picklable arguments plus a device slot.

- local: one after another here; the first failure is raised as it is (a user error keeps
  its one-line message).
- pool: at most one job per slot at a time in spawned processes (`slots` are device ids, or
  None on CPU); a job's crash never touches the others.
- ray: one Ray task per job with its own CPU/GPU reservation; a task whose worker or node dies
  is rerun up to `max_retries` times (errors raised by the job itself are not retried: they
  would fail again). Ray sets CUDA_VISIBLE_DEVICES itself, so the slot is None.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dtmerge.errors import DtmError

Job = tuple[str, tuple]  # (name, positional arguments before the device slot)


@dataclass(frozen=True)
class Placement:
    """How a stage's jobs are placed."""

    kind: str = "local"  # local | pool | ray
    slots: tuple = (None,)  # pool: one concurrent job per slot (device id or None)
    ray_address: str | None = None
    ray_options: dict[str, Any] = field(default_factory=dict)  # num_cpus, num_gpus, max_retries
    threads: int | None = None  # torch threads per job (None: leave the process default)


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


def _nvidia_visible() -> bool:
    """A CUDA device is likely visible, judged without importing torch."""
    return (Path("/dev/nvidiactl").exists()
            and os.environ.get("CUDA_VISIBLE_DEVICES", "0") not in ("", "-1"))


def gpu_driver_present() -> bool:
    """An NVIDIA driver is loaded here (judged without torch, which must not start CUDA yet)."""
    return Path("/dev/nvidiactl").exists()


def pin_job_device(device: str | None) -> str | None:
    """Make the calling job process see exactly one CUDA device, before torch starts CUDA:
    `device` when the stage gave one (train.devices), else the first device visible (Ray's
    reservation, or device 0). A job never sees several, so transformers never wraps it in
    DataParallel with an effective batch larger than the config says. Returns the device
    pinned, or None on a machine without one (or with CUDA hidden: "", "-1")."""
    if device is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None and not gpu_driver_present():
            return None
        device = (visible if visible is not None else "0").split(",")[0].strip()
        if device in ("", "-1"):
            return None
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    return device


def pool_expected(setting: int | str, devices, model) -> bool:
    """Whether a stage set to `setting` parallel jobs (and these train devices) will run a
    process pool, judged before torch is imported, to start the pool early. "auto" counts when
    the model is small, local and no GPU is visible; a wrong guess costs an idle fork server's
    imports, never a result (the stage decides the placement itself)."""
    if devices and len(devices) > 1:
        return True
    # The stages' own rule, with a guess for the GPU and two jobs (a pool needs at least two).
    return parallel_jobs(setting, model, jobs=2, on_cpu=not _nvidia_visible()) > 1


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


def describe_error(err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err  # a Ray task error wraps the job's own error
    return f"{type(cause).__name__}: {cause}"


_PROCESS_CLAIMED = False  # see claim_process


def claim_process() -> None:
    """Mark this process as dtmerge's own from start to exit (the `dtm` command does, first):
    jobs run in it then get the collector settings of the pool's fork server and Ray workers
    (`warm_up_worker`). A caller's process (a notebook, a script or test calling
    `run_pipeline`) is never claimed, and keeps its collector as it is."""
    global _PROCESS_CLAIMED
    _PROCESS_CLAIMED = True


def run_jobs(fn: Callable, jobs: list[Job], where: Placement, *, on_start: Callable[[str], None],
             on_done: Callable[[str, Any], None], on_fail: Callable[[str, str], None]) -> list[str]:
    """Run `fn(*args, slot)` for every job; return "name (Error: message)" per failed job."""
    if not jobs:
        return []
    if where.kind == "ray":
        return _run_ray(fn, jobs, where, on_start, on_done, on_fail)
    if where.kind == "pool" and len(jobs) > 1 and len(where.slots) > 1:
        return _run_pool(fn, jobs, where, on_start, on_done, on_fail)
    if _PROCESS_CLAIMED:
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


def _settle(name, get_result, on_done, on_fail, failures):
    try:
        on_done(name, get_result())
    except Exception as err:  # one job's crash must not stop the others
        on_fail(name, describe_error(err))
        failures.append(f"{name} ({describe_error(err)})")


# Imported once by the fork server (through `dtmerge.pool_preload`); pool workers are forked
# from it with these loaded. The modules the jobs import, not just the packages: transformers,
# TRL and lm-eval load their parts lazily, so a worker forked after `import trl, lm_eval` still
# spent 1.2 s here importing SFTTrainer, lm-eval's HF model and dtmerge's job modules.
JOB_MODULES = ["torch", "transformers", "peft", "trl", "trl.trainer.sft_trainer", "lm_eval",
               "lm_eval.evaluator", "lm_eval.models.huggingface", "dtmerge.train.trainer",
               "dtmerge.train.job", "dtmerge.evaluate.harness", "dtmerge.evaluate.stage"]


@functools.cache  # once per process
def warm_up_worker() -> None:
    """Preload JOB_MODULES in a process dtmerge owns (the pool's fork server, a Ray worker),
    once, with CPython's settings for long-lived processes that fork or run many jobs.

    No cyclic collections while the preload creates its ~480k long-lived objects (1,273
    collections, 1.3 s of an 8 s preload here), then freeze them out of the collector's view:
    a full collection in a job (accelerate runs one at the start of every training job) then
    skips them (0.4 s each here, ~0.01 s frozen), and a forked worker does not write to the
    pages it shares with the server. No collection before the freeze: it took 0.45 s to free
    ~100 objects. Also run before the first job placed in `dtm`'s own process
    (`claim_process`): without it, a sequential run of four tiny jobs spent ~3 s in 12 full
    collections. Never in a caller's process (a notebook): a frozen heap there would keep
    the user's own objects, freed later in cycles, forever.
    """
    import gc

    gc.disable()
    try:
        preload_job_modules()
        gc.freeze()
    finally:
        gc.enable()  # forked workers inherit the setting


def preload_job_modules() -> None:
    """Import JOB_MODULES, skipping any that fails: the server must survive a broken optional
    library (multiprocessing's own preload stops the server at any error but ImportError);
    the job that needs the module imports it again and reports the error itself."""
    import importlib

    for name in JOB_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - see the docstring
            pass


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


def _run_pool(fn, jobs, where: Placement, on_start, on_done, on_fail) -> list[str]:
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
            _settle(name, done.result, on_done, on_fail, failures)
    return failures


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


def _run_ray(fn, jobs, where: Placement, on_start, on_done, on_fail) -> list[str]:
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
        _settle(refs[done[0]], lambda ref=done[0]: ray.get(ref), on_done, on_fail, failures)
    return failures
