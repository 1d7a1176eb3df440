"""Training a run's jobs (the recipes' train stage lists them): each an independent job.

Jobs run one after another by default. With `train.parallel_jobs > 1` they run in a process
pool, one device slot each (CUDA_VISIBLE_DEVICES set per job); with `train.executor: ray` as Ray
tasks (ray_executor.py). A crash in one job never touches the others' outputs. The manifest
is written by this (parent) process only.
"""

from __future__ import annotations

from dataclasses import replace

from dtmerge.config import RunConfig
from dtmerge.errors import DtmError
from dtmerge.executors import (Placement, longest_first, parallel_jobs, run_jobs,
                               threads_per_job)
from dtmerge.process_guard import fault_point
from dtmerge.rundir import RunDir, hash_obj, hash_path
from dtmerge.train.job import TrainJob, run_train_job
from dtmerge.train.joint import joint_applies, release_shared_base, run_joint_train_job

# Keys that change how a job runs but not what it learns.
_NOT_FINGERPRINTED = {"parallel_jobs", "devices", "sft_baseline", "logging_steps", "save_steps",
                      "executor", "ray_address", "gpus_per_job", "cpus_per_job", "max_retries",
                      "shared_storage", "threads_per_job", "joint"}


def job_fingerprint(cfg: RunConfig, job: TrainJob) -> str:
    train = cfg.train.model_dump(mode="json", exclude=_NOT_FINGERPRINTED)
    payload = {
        "model": cfg.model.model_dump(mode="json"), "train": train,
        "monitor": cfg.monitor.model_dump(mode="json"), "data": hash_path(job.data),
    }
    if job.spec:  # a recipe's training change (absent for plain SFT: old fingerprints hold)
        payload["recipe"] = job.spec
    return hash_obj(payload)


def train_jobs(cfg: RunConfig, run: RunDir, jobs: list[TrainJob], log=print) -> dict:
    """Train every job of `jobs` not already done with the same fingerprint (and whose model
    is still there); finished jobs are kept when another fails."""
    todo = []
    for job in jobs:
        if not job.data.exists():
            raise DtmError(f"{job.data} is missing: run `dtm disperse {run.root}` first")
        run.require_finished("data" if job.data == run.all_data else "disperse", job.data)
        fp = job_fingerprint(cfg, job)
        if run.needs_run(f"train:{job.name}", fp, [job.out], log):
            todo.append((job, fp))

    failures = _run(cfg, run, todo, log)
    if failures:
        raise DtmError("training failed for " + "; ".join(failures)
                       + ". Finished jobs are kept; rerun the same command to retry the rest")
    return {"jobs": [j.name for j in jobs], "trained": [j.name for j, _ in todo]}


def _train_parallel_jobs(cfg: RunConfig, jobs: int) -> int:
    """train.parallel_jobs, with "auto" decided from the base model's size (CPU only)."""
    if cfg.train.parallel_jobs != "auto":
        return cfg.train.parallel_jobs
    import torch

    from dtmerge.models import resolve_model_path

    return parallel_jobs("auto", resolve_model_path(cfg.model), jobs,
                         on_cpu=not torch.cuda.is_available())


def local_placement(cfg: RunConfig, jobs: int) -> Placement:
    """Where `jobs` training runs go on this machine: one per device of train.devices, else
    train.parallel_jobs at once (a process pool when more than one), threads shared."""
    slots = tuple(cfg.train.devices or [None] * _train_parallel_jobs(cfg, jobs))
    return Placement("pool" if len(slots) > 1 else "local", slots=slots,
                     threads=threads_per_job(cfg.train.threads_per_job, min(len(slots), jobs)))


def _run(cfg: RunConfig, run: RunDir, todo: list, log) -> list[str]:
    """Run the jobs on the configured executor; the manifest is written here only."""
    cfg_json = cfg.model_dump(mode="json")
    by_name = {job.name: (job, fp) for job, fp in todo}
    joint = bool(todo) and joint_applies(cfg, log)  # train/joint.py: one process, one base
    on_ray = cfg.train.executor == "ray" and not joint
    if joint:
        where = Placement("local", slots=((cfg.train.devices or [None])[0],),
                          threads=threads_per_job(cfg.train.threads_per_job, 1))
        calls = [(job.name, (cfg_json, str(run.root), job, fp)) for job, fp in todo]
        body = run_joint_train_job
    elif on_ray:
        from dtmerge.train import ray_executor

        where, calls = ray_executor.plan_ray(cfg_json, run, todo)
        where = replace(where, threads=threads_per_job(cfg.train.threads_per_job, 1,
                                                       cfg.train.cpus_per_job))
        body = ray_executor.ray_train_job
    else:
        where = local_placement(cfg, len(todo))
        calls = [(job.name, (cfg_json, str(run.root), job, fp)) for job, fp in todo]
        if where.kind == "pool":  # a job's steps grow with its data: the biggest starts first
            calls = longest_first(calls, lambda name: by_name[name][0].data.stat().st_size)
        body = run_train_job

    def on_start(name):
        job, fp = by_name[name]
        log(f"[train] {job.name}: {job.data.name} -> {job.out}" + {
            "ray": " (Ray task)", "pool": " (process pool)"}.get(where.kind, ""))
        run.mark_started(f"train:{name}", fp, {"data": str(job.data)})

    def on_done(name, info):
        if on_ray:  # outputs shipped back without shared storage are written here
            info = ray_executor.finish_ray_job(by_name[name][0], info)
        fault_point(f"finished train:{name}")
        run.mark_done(f"train:{name}", **info)

    try:
        return run_jobs(body, calls, where, on_start=on_start, on_done=on_done,
                        on_fail=lambda name, err: run.mark_failed(f"train:{name}", err))
    finally:
        if on_ray:
            ray_executor.cleanup_probe(run)
        if joint:  # the later stages load their own models
            release_shared_base()
