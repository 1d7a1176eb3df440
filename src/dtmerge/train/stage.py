"""The train stage: K sub-models and the SFT baseline as independent jobs.

Jobs run one after another by default. With `train.parallel_jobs > 1` they run in a pool of
spawned processes, one device slot each (CUDA_VISIBLE_DEVICES set per job), so a crash in
one job never touches the others' outputs. The manifest is written by this (parent) process
only.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed

from dtmerge.config import RunConfig
from dtmerge.errors import DtmError
from dtmerge.rundir import RunDir, hash_obj, hash_path, run_job
from dtmerge.train.job import TrainJob, run_train_job

# Keys that change how a job runs but not what it learns.
_NOT_FINGERPRINTED = {"parallel_jobs", "devices", "sft_baseline", "logging_steps", "save_steps",
                      "executor", "ray_address", "gpus_per_job", "cpus_per_job"}


def plan_jobs(cfg: RunConfig, run: RunDir) -> list[TrainJob]:
    jobs = [TrainJob(f"sub_{k}", run.portion(k), run.model(f"sub_{k}"))
            for k in range(cfg.disperse.num_portions)]
    if cfg.train.sft_baseline:
        jobs.append(TrainJob("sft", run.all_data, run.model("sft")))
    return jobs


def job_fingerprint(cfg: RunConfig, job: TrainJob) -> str:
    train = cfg.train.model_dump(mode="json", exclude=_NOT_FINGERPRINTED)
    payload = {
        "model": cfg.model.model_dump(mode="json"), "train": train,
        "monitor": cfg.monitor.model_dump(mode="json"), "data": hash_path(job.data),
    }
    if job.spec:  # a recipe's training change (absent for plain SFT: old fingerprints hold)
        payload["recipe"] = job.spec
    return hash_obj(payload)


def train_stage(cfg: RunConfig, run: RunDir, log=print, jobs: list[TrainJob] | None = None) -> dict:
    """Train every job (default: `plan_jobs`; recipes pass theirs) not already done with the
    same fingerprint."""
    jobs = plan_jobs(cfg, run) if jobs is None else jobs
    todo = []
    for job in jobs:
        if not job.data.exists():
            raise DtmError(f"{job.data} is missing: run `dtm disperse {run.root}` first")
        run.require_finished("data" if job.name == "sft" else "disperse", job.data)
        fp = job_fingerprint(cfg, job)
        if run.needs_run(f"train:{job.name}", fp, [job.out], log):
            todo.append((job, fp))

    cfg_json = cfg.model_dump(mode="json")
    if cfg.train.executor == "ray":
        from dtmerge.train.ray_executor import run_on_ray

        failures = run_on_ray(cfg_json, run, todo, log)
    elif len(todo) > 1 and (len(cfg.train.devices or []) > 1 or cfg.train.parallel_jobs > 1):
        slots = cfg.train.devices or [None] * cfg.train.parallel_jobs
        failures = _run_pool(cfg_json, run, todo, slots, log)
    else:
        device = (cfg.train.devices or [None])[0]
        for job, fp in todo:
            log(f"[train] {job.name}: {job.data.name} -> {job.out}")
            run_job(run, f"train:{job.name}", fp,
                    lambda job=job, fp=fp: run_train_job(cfg_json, str(run.root), job, fp, device),
                    inputs={"data": str(job.data)}, log=lambda _msg: None)  # decided above
        failures = []
    if failures:
        raise DtmError("training failed for " + "; ".join(failures)
                       + ". Finished jobs are kept; rerun the same command to retry the rest")
    return {"jobs": [j.name for j in jobs], "trained": [j.name for j, _ in todo]}


def _run_pool(cfg_json, run: RunDir, todo, slots, log) -> list[str]:
    """Run jobs in spawned processes, at most one per slot at a time."""
    failures = []
    free = list(slots)
    pending = list(todo)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(slots), mp_context=ctx) as pool:
        running = {}
        while pending or running:
            while pending and free:
                job, fp = pending.pop(0)
                slot = free.pop(0)
                log(f"[train] {job.name} on device slot {slot}")
                run.mark_started(f"train:{job.name}", fp, {"data": str(job.data)})
                fut = pool.submit(run_train_job, cfg_json, str(run.root), job, fp, slot)
                running[fut] = (job, slot)
            done = next(as_completed(running))
            job, slot = running.pop(done)
            free.append(slot)
            try:
                run.mark_done(f"train:{job.name}", **done.result())
            except Exception as err:  # one job's crash must not stop the others
                run.mark_failed(f"train:{job.name}", f"{type(err).__name__}: {err}")
                failures.append(f"{job.name} ({type(err).__name__}: {err})")
    return failures
